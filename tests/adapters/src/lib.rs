//! Nothing here: the crate exists for its tests (`tests/`), which run the d-engine and openraft
//! adapters under their libraries' own conformance suites and in multi-node clusters.
