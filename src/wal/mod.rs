//! The write-ahead log: numbered segment files of checksummed records (`record`, `segment`), the
//! recovery scan (`recover`), the single writer (`writer`), group-committed fdatasync (`sync`) and
//! recycling of retired segments (`spare`).

mod record;
mod recover;
mod segment;
mod spare;
mod sync;
mod writer;

#[cfg(test)]
pub(crate) use record::HEADER_LEN;
pub(crate) use record::Record;
pub(crate) use record::{BATCH_FRAMING, ENTRY_FRAMING, MAX_BODY_LEN};
pub(crate) use record::{Frame, checksum, parse_frame};
pub(crate) use recover::{Recovered, list_segments, recover};
pub(crate) use segment::Tail;
pub(crate) use segment::decode_header;
pub(crate) use spare::SparePool;
pub(crate) use sync::{SyncPoint, sync_dir};
pub(crate) use writer::WalWriter;
