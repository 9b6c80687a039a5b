//! The cold tier: zstd blocks in redb (`store`), their codec (`block`), the store's compression
//! dictionary (`dict`), the decompressed-block cache (`cache`) and the read path over both
//! (`reader`).

pub(crate) mod block;
pub(crate) mod cache;
pub(crate) mod dict;
pub(crate) mod reader;
pub(crate) mod store;
