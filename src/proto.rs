//! Wire types shared with Raft libraries.
//!
//! [`Entry`] and [`LogId`] are prost messages written by hand (no `protoc` needed). Their field numbers
//! and wire types match d-engine's `common.proto`: an encoded tierlog `Entry` is byte-identical to an
//! encoded d-engine `Entry` whose `EntryPayload` message is carried, already encoded, in field 3. The
//! engine never looks inside `payload`; it stores and returns the bytes untouched.

use bytes::Bytes;

/// A Raft group's id within one engine. Group 0 always exists: it is what
/// [`TieredEngine::log_store`](crate::StorageEngine::log_store) serves, and a directory written
/// before groups existed opens as group 0 alone.
pub type GroupId = u64;

/// One Raft log entry: position, term and opaque payload.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    /// Log position, starting at 1 (0 is reserved for "no entry").
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// Term of the leader that created the entry.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// Encoded payload (for d-engine: the encoded `EntryPayload` message).
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

/// The identity of a log position: term first, then index (d-engine's field order).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message, serde::Serialize, serde::Deserialize,
)]
pub struct LogId {
    /// Term of the entry at `index`.
    #[prost(uint64, tag = "1")]
    pub term: u64,
    /// Log position.
    #[prost(uint64, tag = "2")]
    pub index: u64,
}

impl Entry {
    /// Builds an entry from its parts.
    pub fn new(index: u64, term: u64, payload: impl Into<Bytes>) -> Self {
        Entry {
            index,
            term,
            payload: payload.into(),
        }
    }

    /// The entry's [`LogId`].
    pub fn log_id(&self) -> LogId {
        LogId {
            term: self.term,
            index: self.index,
        }
    }
}

impl LogId {
    /// Builds a log id (`term` first, as on the wire).
    pub fn new(term: u64, index: u64) -> Self {
        LogId { term, index }
    }
}

/// A candidate's vote as Raft persists it: a superset of d-engine's and openraft's vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize)]
pub struct VotedFor {
    /// Node the vote went to.
    pub voted_for_id: u64,
    /// Term in which the vote was cast.
    pub voted_for_term: u64,
    /// Whether the vote is committed (openraft's committed leader; d-engine 0.2's `committed`).
    pub committed: bool,
}

/// The state Raft must persist before answering RPCs: current term and vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize)]
pub struct HardState {
    /// Latest term this node has seen.
    pub current_term: u64,
    /// The vote cast in `current_term`, if any.
    pub voted_for: Option<VotedFor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn entry_encoding_matches_d_engine_field_layout() {
        let e = Entry::new(7, 3, Bytes::from_static(b"\x12\x02hi"));
        // field 1 varint 7, field 2 varint 3, field 3 length-delimited 4 bytes.
        assert_eq!(e.encode_to_vec(), b"\x08\x07\x10\x03\x1a\x04\x12\x02hi");
        assert_eq!(Entry::decode(&e.encode_to_vec()[..]).unwrap(), e);
    }

    #[test]
    fn log_id_encodes_term_first() {
        assert_eq!(LogId::new(2, 9).encode_to_vec(), b"\x08\x02\x10\x09");
    }
}
