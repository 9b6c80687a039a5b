//! The cold tier: zstd blocks in redb (`store`), their codec (`block`), the store's compression
//! dictionary (`dict`), a group's block index (`index`), the decompressed-block cache (`cache`), the
//! reused buffers of decoded frames (`pool`) and the read path over them (`reader`).

pub(crate) mod block;
pub(crate) mod cache;
pub(crate) mod dict;
pub(crate) mod index;
pub(crate) mod pool;
pub(crate) mod reader;
pub(crate) mod store;
