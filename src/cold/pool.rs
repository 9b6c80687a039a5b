//! Buffers of decoded frames, kept for reuse once the frame cache and every reader let go of a
//! frame. A buffer on fresh heap pages costs a page fault and the zeroing of every page on first
//! touch: in a `perf record` of the peers follower-catchup child, page faults (`clear_page_erms`
//! most of it) were 47 % of the cold range reads' CPU samples, zstd the rest
//! (`docs/performance.md`, "Cold read path"). A range read decoding into buffers the previous one
//! gave back touches no fresh page.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::block::FRAME_TARGET_RAW;

/// Largest buffer kept: a frame holding one entry bigger than a frame is not worth keeping.
const MAX_KEPT_CAPACITY: usize = 2 * FRAME_TARGET_RAW;

/// Kept buffers, bounded in bytes (their capacities): the bound is carved out of the frame cache's
/// share of the memory budget (`ColdReader::new`), so cache and pool together stay inside it.
pub(crate) struct FramePool {
    free: Mutex<Kept>,
    max_bytes: u64,
}

#[derive(Default)]
struct Kept {
    bufs: Vec<Vec<u8>>,
    bytes: u64,
}

/// A frame's buffer, going back to its pool when the last `Bytes` of it is dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<FramePool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        let cap = self.buf.capacity() as u64;
        let mut free = self.pool.free.lock();
        if free.bytes + cap <= self.pool.max_bytes {
            free.bytes += cap;
            free.bufs.push(std::mem::take(&mut self.buf));
        }
    }
}

impl FramePool {
    /// A pool keeping at most `max_bytes` of buffers.
    pub(crate) fn new(max_bytes: u64) -> Self {
        FramePool {
            free: Mutex::new(Kept::default()),
            max_bytes,
        }
    }

    /// A buffer to decode a frame of `raw_len` bytes into: a kept one when one is large enough.
    pub(crate) fn take(&self, raw_len: usize) -> Vec<u8> {
        // Frames differ in length (cut at entry boundaries), so the newest kept buffer may be too
        // small while an older one fits.
        let mut free = self.free.lock();
        match free.bufs.iter().rposition(|b| b.capacity() >= raw_len) {
            Some(k) => {
                let b = free.bufs.swap_remove(k);
                free.bytes -= b.capacity() as u64;
                b
            }
            None => Vec::new(),
        }
    }

    /// The bytes of a decoded frame in `buf`, whose buffer comes back here when they are dropped.
    pub(crate) fn own(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.free.lock().bufs.len()
    }

    #[cfg(test)]
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.free.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped_and_is_handed_out_again() {
        let pool = Arc::new(FramePool::new(1 << 20));
        let mut b = pool.take(1000);
        b.extend_from_slice(&[7u8; 1000]);
        let ptr = b.as_ptr();
        let bytes = pool.own(b);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.kept(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.kept(), 1);
        assert_eq!(
            pool.take(2000).capacity(),
            0,
            "too small a kept buffer is not handed out"
        );
        let again = pool.take(1000);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound_in_bytes_and_no_oversized_buffer() {
        let pool = Arc::new(FramePool::new(1000));
        let all: Vec<Bytes> = (0..15).map(|_| pool.own(Vec::with_capacity(100))).collect();
        drop(all);
        assert_eq!((pool.kept(), pool.kept_bytes()), (10, 1000));
        let b = pool.take(50);
        assert_eq!((b.capacity(), pool.kept_bytes()), (100, 900));
        let pool = Arc::new(FramePool::new(u64::MAX));
        drop(pool.own(Vec::with_capacity(MAX_KEPT_CAPACITY + 1)));
        assert_eq!(pool.kept(), 0);
    }
}
