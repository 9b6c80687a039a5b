//! The cold tier: zstd blocks in redb (`store`), their codec (`block`) and the decompressed-block
//! cache (`cache`).

pub(crate) mod block;
pub(crate) mod cache;
pub(crate) mod store;
