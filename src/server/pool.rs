//! A per-worker pool of boxed buffers.
//!
//! Idle keep-alive connections own no buffer: reads go into the worker's scratch
//! buffer and responses are queued as references. A connection takes a pooled
//! buffer only while it holds input it could not finish with (part of a request
//! head, or requests waiting for room to answer) or output the kernel has not
//! accepted yet, and gives it back as soon as that is resolved. The pool keeps at
//! most `max_free` buffers and frees the rest, so memory follows the number of
//! connections that are mid-request, not the number that are open.

/// Boxed values of one kind, kept for reuse.
pub(crate) struct Pool<T> {
    free: Vec<Box<T>>,
    max_free: usize,
}

impl<T> Pool<T> {
    /// An empty pool that keeps at most `max_free` values.
    pub(crate) fn new(max_free: usize) -> Pool<T> {
        Pool {
            free: Vec::new(),
            max_free,
        }
    }

    /// A value from the pool, or a new one from `make`. The caller resets it.
    #[inline]
    pub(crate) fn take_or(&mut self, make: impl FnOnce() -> Box<T>) -> Box<T> {
        self.free.pop().unwrap_or_else(make)
    }

    /// Returns a value; kept if the pool has room, freed otherwise.
    #[inline]
    pub(crate) fn give(&mut self, value: Box<T>) {
        if self.free.len() < self.max_free {
            self.free.push(value);
        }
    }

    /// Values currently kept for reuse.
    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_reused() {
        let mut p: Pool<[u8; 16]> = Pool::new(2);
        let taken: Vec<_> = (0..4).map(|_| p.take_or(|| Box::new([7; 16]))).collect();
        for b in taken {
            p.give(b);
        }
        assert_eq!(p.free_count(), 2);
        let again = p.take_or(|| Box::new([0; 16]));
        assert_eq!(again[0], 7, "a kept value is reused");
        assert_eq!(p.free_count(), 1);
    }
}
