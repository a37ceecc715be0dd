//! A per-worker pool of byte buffers.
//!
//! Idle keep-alive connections own no buffer: reads go into the worker's scratch
//! buffer and responses into its output buffer. A connection takes a pooled buffer
//! only while it holds a partial request head or output the kernel did not accept
//! yet, and gives it back as soon as that is resolved. The pool keeps at most
//! `max_free` buffers and frees the rest, so memory follows the number of connections
//! that are mid-request, not the number that are open.

/// Buffers of one kind: fixed-size input buffers (length == capacity, contents
/// irrelevant) or growable output buffers (length 0 when free).
pub struct BufPool {
    free: Vec<Vec<u8>>,
    max_free: usize,
    size: usize,
    fixed: bool,
}

impl BufPool {
    /// A pool of input buffers, each exactly `size` bytes long.
    pub fn fixed(size: usize, max_free: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            max_free,
            size,
            fixed: true,
        }
    }

    /// A pool of empty output buffers with `size` bytes of initial capacity.
    pub fn growable(size: usize, max_free: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            max_free,
            size,
            fixed: false,
        }
    }

    /// A buffer from the pool, or a new one.
    pub fn take(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(b) => b,
            None if self.fixed => vec![0; self.size],
            None => Vec::with_capacity(self.size),
        }
    }

    /// Returns a buffer. Kept if the pool has room and the buffer did not grow far
    /// beyond its nominal size; freed otherwise.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if self.free.len() >= self.max_free || buf.capacity() > self.size * 4 {
            return;
        }
        if !self.fixed {
            buf.clear();
        } else if buf.len() != self.size {
            return;
        }
        self.free.push(buf);
    }

    /// Buffers currently kept for reuse.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_reused() {
        let mut p = BufPool::growable(16, 2);
        let bufs: Vec<_> = (0..4).map(|_| p.take()).collect();
        for mut b in bufs {
            b.extend_from_slice(b"abc");
            p.give(b);
        }
        assert_eq!(p.free_count(), 2);
        assert!(p.take().is_empty());
        let big = Vec::with_capacity(1000);
        p.give(big);
        assert_eq!(p.free_count(), 1);
        let mut f = BufPool::fixed(8, 1);
        assert_eq!(f.take().len(), 8);
    }
}
