#!/bin/sh
# Builds and runs the peers benchmark in release mode: benches/peers/run.sh [peers options]
#
# d-engine-proto's build script needs a `protoc`; raft-proto's build script (protobuf-build)
# refuses a PROTOC that is not protoc 3.x and panics, but falls back to its own bundled protoc
# when the `protoc` on PATH is too new. So the vendored protoc (protoc-bin-vendored, v36) is put
# on PATH, not in PROTOC, and both build scripts are satisfied.
set -eu
cd "$(dirname "$0")/../.."
cargo fetch --quiet
VENDORED=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*protoc-bin-vendored-linux-x86_64-*/bin/protoc' | sort | tail -n 1)
[ -n "$VENDORED" ] || { echo "vendored protoc not found (is protoc-bin-vendored fetched?)" >&2; exit 1; }
mkdir -p target/peers-protoc
ln -sf "$VENDORED" target/peers-protoc/protoc
unset PROTOC
PATH="$PWD/target/peers-protoc:$PATH" exec cargo run --release -p tierlog-peers -- "$@"
