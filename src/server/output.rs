//! The output a connection owes: references to precomputed responses, in order.
//!
//! A connection queues [`RespId`]s, never response bytes, so what it holds does
//! not depend on the size of the configured body: 64 queued answers of a 64 MiB
//! body take the same few hundred bytes as 64 answers of `Vrypt`. The bytes are
//! gathered from the worker's [`Templates`] at write time and sent with one
//! vectored write.
//!
//! The templates' `Date` is rewritten once a second. A response whose first bytes
//! have been written must not change under the client, so when a write ends inside
//! that mutable prefix, the rest of the prefix is copied aside (at most
//! [`MUTABLE_PREFIX_MAX`] bytes) and sent from the copy.

use crate::http::response::MUTABLE_PREFIX_MAX;
use crate::http::{RespId, Templates};
use std::io::{self, IoSlice, Write};

/// Responses a connection may have queued at once.
pub(crate) const QUEUE_SLOTS: usize = 64;
/// A connection stops answering new requests while this many bytes are unsent.
pub(crate) const OUTPUT_CAP: usize = 64 * 1024;
/// Buffers handed to one `writev` (runs of small answers are staged into one).
const IOV_BATCH: usize = 16;
/// Every request may queue up to this many responses: `100 Continue`, then its answer.
const PER_REQUEST: usize = 2;
/// Pieces up to this long are copied together into one buffer before a write.
const STAGE_PIECE_MAX: usize = 2048;

/// One buffer of a vectored write: bytes of a template, or a range of the stage.
#[derive(Clone, Copy)]
enum Piece<'a> {
    Direct(&'a [u8]),
    Staged(usize, usize),
}

/// Queued responses of one connection (a ring of [`QUEUE_SLOTS`] references).
pub(crate) struct OutQueue {
    ids: [RespId; QUEUE_SLOTS],
    /// When each response may be written (`--delay`), on the worker's clock in
    /// microseconds; 0 for at once.
    ready: [u64; QUEUE_SLOTS],
    front: usize,
    len: usize,
    /// Bytes of the front response already written.
    sent: usize,
    /// Bytes not yet written, over all queued responses.
    pending: usize,
    /// The front response's mutable prefix from `frozen_from` on, as it was when
    /// its first bytes were written; valid while `frozen_len > 0`.
    frozen: [u8; MUTABLE_PREFIX_MAX],
    frozen_from: usize,
    frozen_len: usize,
}

impl OutQueue {
    /// An empty queue, boxed for the pool.
    pub(crate) fn boxed() -> Box<OutQueue> {
        Box::new(OutQueue {
            ids: [RespId::CONTINUE; QUEUE_SLOTS],
            ready: [0; QUEUE_SLOTS],
            front: 0,
            len: 0,
            sent: 0,
            pending: 0,
            frozen: [0; MUTABLE_PREFIX_MAX],
            frozen_from: 0,
            frozen_len: 0,
        })
    }

    /// Nothing is queued.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Responses queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes not yet written.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Whether another request may be answered: there is a slot for each response
    /// it can produce, and the unsent bytes are below [`OUTPUT_CAP`].
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        self.len + PER_REQUEST <= QUEUE_SLOTS && self.pending < OUTPUT_CAP
    }

    /// Appends a response. The caller has checked [`has_room`](Self::has_room)
    /// before the request whose answer this is.
    #[cfg(test)]
    pub(crate) fn push(&mut self, id: RespId, t: &Templates) {
        self.push_at(id, t, 0);
    }

    /// Appends a response that may not be written before `ready_at` (µs).
    #[inline]
    pub(crate) fn push_at(&mut self, id: RespId, t: &Templates, ready_at: u64) {
        debug_assert!(self.len < QUEUE_SLOTS);
        if self.len == QUEUE_SLOTS {
            return; // unreachable by the room check; never overwrite the ring
        }
        let at = (self.front + self.len) % QUEUE_SLOTS;
        // A response waits behind the ones before it: ready times never decrease
        // along the queue, which `write_ready` relies on.
        let after = if self.len > 0 {
            self.ready[(at + QUEUE_SLOTS - 1) % QUEUE_SLOTS]
        } else {
            0
        };
        self.ids[at] = id;
        self.ready[at] = ready_at.max(after);
        self.len += 1;
        self.pending += t.len(id);
    }

    /// When the front response may be written, if that is later than `now` (µs):
    /// the connection waits for its delay, not for the client.
    #[inline]
    pub(crate) fn delayed_until(&self, now: u64) -> Option<u64> {
        let t = self.ready[self.front];
        (self.len > 0 && t > now).then_some(t)
    }

    /// Responses that may be written at `now`: the leading ones whose time has come
    /// (a response waits behind the ones before it).
    fn ready_count(&self, now: u64) -> usize {
        (0..self.len)
            .take_while(|&k| self.ready[(self.front + k) % QUEUE_SLOTS] <= now)
            .count()
    }

    /// Makes every queued response ready now (the server drains).
    pub(crate) fn release_delays(&mut self) {
        self.ready = [0; QUEUE_SLOTS];
    }

    /// The last queued response, if any.
    pub(crate) fn last(&self) -> Option<RespId> {
        (self.len > 0).then(|| self.ids[(self.front + self.len - 1) % QUEUE_SLOTS])
    }

    /// Makes the last queued response announce `Connection: close` when none of it
    /// has been written yet. Returns whether the last response now closes.
    pub(crate) fn close_last(&mut self, t: &Templates) -> bool {
        let Some(id) = self.last() else {
            return false;
        };
        if id.closes() {
            return true;
        }
        let Some(closing) = id.closing() else {
            return false;
        };
        if self.len == 1 && self.sent > 0 {
            return false;
        }
        let at = (self.front + self.len - 1) % QUEUE_SLOTS;
        self.ids[at] = closing;
        self.pending = self.pending - t.len(id) + t.len(closing);
        true
    }

    /// Describes the unsent bytes, in order, as at most [`IOV_BATCH`] pieces. Runs of
    /// short pieces (pipelined small answers) are copied into `stage` and become one
    /// piece: copying a few hundred bytes costs less than the kernel's walk over as
    /// many small buffers. A lone piece is never copied.
    fn gather<'a>(
        &'a self,
        t: &'a Templates,
        stage: &mut [u8],
        out: &mut [Piece<'a>; IOV_BATCH],
    ) -> usize {
        let mut n: usize = 0;
        let mut staged = 0;
        let single = self.len == 1;
        for k in 0..self.len {
            let id = self.ids[(self.front + k) % QUEUE_SLOTS];
            let (head, body) = t.parts(id);
            let mut skip = if k == 0 { self.sent } else { 0 };
            let mut parts: [&'a [u8]; 3] = [&[], &[], &[]];
            if k == 0 && self.frozen_len > 0 {
                parts[0] = &self.frozen[skip - self.frozen_from..self.frozen_len];
                skip = self.frozen_from + self.frozen_len;
            }
            if skip < head.len() {
                parts[1] = &head[skip..];
                parts[2] = body;
            } else {
                parts[2] = &body[skip - head.len()..];
            }
            for part in parts {
                if part.is_empty() {
                    continue;
                }
                if !single && part.len() <= STAGE_PIECE_MAX && staged + part.len() <= stage.len() {
                    stage[staged..staged + part.len()].copy_from_slice(part);
                    match n.checked_sub(1).map(|last| &mut out[last]) {
                        Some(Piece::Staged(_, end)) if *end == staged => *end += part.len(),
                        _ => {
                            if n == IOV_BATCH {
                                return n;
                            }
                            out[n] = Piece::Staged(staged, staged + part.len());
                            n += 1;
                        }
                    }
                    staged += part.len();
                    continue;
                }
                if n == IOV_BATCH {
                    return n;
                }
                out[n] = Piece::Direct(part);
                n += 1;
            }
        }
        n
    }

    /// Marks `n` more bytes as written.
    fn advance(&mut self, mut n: usize, t: &Templates) {
        self.pending -= n;
        while n > 0 && self.len > 0 {
            let id = self.ids[self.front];
            let left = t.len(id) - self.sent;
            if n < left {
                self.sent += n;
                break;
            }
            n -= left;
            self.front = (self.front + 1) % QUEUE_SLOTS;
            self.len -= 1;
            self.sent = 0;
            self.frozen_len = 0;
        }
        if self.len > 0 && self.sent > 0 {
            let id = self.ids[self.front];
            let end = t.mutable_end(id);
            if self.sent >= end {
                self.frozen_len = 0;
            } else if self.frozen_len == 0 {
                // Written up to inside the date: keep the rest of it as it was.
                let (head, _) = t.parts(id);
                self.frozen[..end - self.sent].copy_from_slice(&head[self.sent..end]);
                self.frozen_from = self.sent;
                self.frozen_len = end - self.sent;
            }
        }
    }

    /// Writes as much as `w` takes; returns the bytes written. Stops at the first
    /// short write (the socket is full) or when everything is written. `stage` is
    /// scratch space (the worker's read buffer, free while writing).
    pub(crate) fn write_to<W: Write>(
        &mut self,
        w: &mut W,
        t: &Templates,
        stage: &mut [u8],
    ) -> io::Result<usize> {
        self.write_ready(w, t, stage, u64::MAX)
    }

    /// [`write_to`](Self::write_to) for the responses whose time has come at `now`
    /// (µs); the later ones stay queued, untouched.
    pub(crate) fn write_ready<W: Write>(
        &mut self,
        w: &mut W,
        t: &Templates,
        stage: &mut [u8],
        now: u64,
    ) -> io::Result<usize> {
        let ready = if self.ready[self.front] > now {
            0
        } else if self.ready[(self.front + self.len.saturating_sub(1)) % QUEUE_SLOTS] <= now {
            self.len
        } else {
            self.ready_count(now)
        };
        if ready == self.len {
            return self.write_all_queued(w, t, stage);
        }
        if ready == 0 {
            return Ok(0);
        }
        // Write only the ready prefix: hide the rest while writing.
        let hidden = self.len - ready;
        self.len = ready;
        let res = self.write_all_queued(w, t, stage);
        self.len += hidden;
        res
    }

    fn write_all_queued<W: Write>(
        &mut self,
        w: &mut W,
        t: &Templates,
        stage: &mut [u8],
    ) -> io::Result<usize> {
        if self.len == 1 && self.frozen_len == 0 {
            // The common case, one answer per read: no gathering.
            let (head, body) = t.parts(self.ids[self.front]);
            loop {
                let res = if self.sent < head.len() && !body.is_empty() {
                    w.write_vectored(&[IoSlice::new(&head[self.sent..]), IoSlice::new(body)])
                } else if self.sent < head.len() {
                    w.write(&head[self.sent..])
                } else {
                    w.write(&body[self.sent - head.len()..])
                };
                return match res {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.advance(n, t);
                        Ok(n)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
            }
        }
        let mut total = 0;
        while self.len > 0 {
            let mut pieces = [Piece::Direct(&[]); IOV_BATCH];
            let count = self.gather(t, stage, &mut pieces);
            let mut iov = [IoSlice::new(&[]); IOV_BATCH];
            let mut offered = 0;
            for (slot, piece) in iov.iter_mut().zip(&pieces[..count]) {
                let bytes = match *piece {
                    Piece::Direct(b) => b,
                    Piece::Staged(from, to) => &stage[from..to],
                };
                offered += bytes.len();
                *slot = IoSlice::new(bytes);
            }
            let res = if count == 1 {
                w.write(&iov[0])
            } else {
                w.write_vectored(&iov[..count])
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n, t);
                    total += n;
                    if n < offered {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Empties the queue (when it goes back to the pool).
    pub(crate) fn clear(&mut self) {
        self.front = 0;
        self.len = 0;
        self.sent = 0;
        self.pending = 0;
        self.frozen_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::Persistence;
    use crate::http::ResponseSpec;

    /// A socket that takes at most `cap` bytes per write.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.cap == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_response_is_never_ready_before_the_ones_ahead_of_it() {
        let t = Templates::new(&ResponseSpec::default(), 0);
        let id = RespId::configured(false, Persistence::Default);
        let mut q = OutQueue::boxed();
        q.push_at(id, &t, 100);
        q.push_at(id, &t, 300);
        q.push_at(id, &t, 0);
        let mut out = Trickle {
            got: Vec::new(),
            cap: usize::MAX,
        };
        let one = t.len(id);
        assert_eq!(
            q.write_ready(&mut out, &t, &mut [0; 4096], 150).unwrap(),
            one
        );
        assert_eq!(q.delayed_until(150), Some(300));
        assert_eq!(
            q.write_ready(&mut out, &t, &mut [0; 4096], 300).unwrap(),
            2 * one
        );
    }

    #[test]
    fn partial_writes_deliver_every_byte_in_order() {
        let spec = ResponseSpec {
            body: (0..40_000u32).map(|i| (i % 251) as u8).collect(),
            ..ResponseSpec::default()
        };
        let t = Templates::new(&spec, 784_111_777);
        let ids = [
            RespId::CONTINUE,
            RespId::configured(false, Persistence::Default),
            RespId::configured(true, Persistence::Default),
            RespId::configured(false, Persistence::Close),
        ];
        let expected: Vec<u8> = ids.iter().flat_map(|&id| t.bytes(id)).collect();
        for cap in [1, 7, 60, 1000, 70_000] {
            let mut q = OutQueue::boxed();
            for id in ids {
                q.push(id, &t);
            }
            assert_eq!(q.pending(), expected.len());
            let mut sock = Trickle {
                got: Vec::new(),
                cap,
            };
            while !q.is_empty() {
                let n = q.write_to(&mut sock, &t, &mut [0; 4096]).unwrap();
                assert!(n > 0);
            }
            assert_eq!(q.pending(), 0);
            assert_eq!(sock.got, expected, "cap {cap}");
        }
    }

    #[test]
    fn a_begun_response_keeps_its_date() {
        let mut t = Templates::new(&ResponseSpec::default(), 784_111_777);
        let id = RespId::configured(false, Persistence::Default);
        let before = t.bytes(id);
        let mut q = OutQueue::boxed();
        q.push(id, &t);
        let mut sock = Trickle {
            got: Vec::new(),
            cap: 40,
        };
        q.write_to(&mut sock, &t, &mut [0; 4096]).unwrap();
        t.refresh_date(784_111_777 + 3600);
        sock.cap = 10_000;
        q.write_to(&mut sock, &t, &mut [0; 4096]).unwrap();
        assert_eq!(sock.got, before);
        assert_ne!(t.bytes(id), before, "the template itself did move on");
    }

    #[test]
    fn room_and_close_last() {
        let t = Templates::new(&ResponseSpec::default(), 0);
        let mut q = OutQueue::boxed();
        let keep = RespId::configured(false, Persistence::KeepAlive);
        while q.has_room() {
            q.push(keep, &t);
        }
        assert_eq!(q.len(), QUEUE_SLOTS - PER_REQUEST + 1);
        assert!(q.close_last(&t));
        assert_eq!(
            q.last(),
            Some(RespId::configured(false, Persistence::Close))
        );
        let mut one = OutQueue::boxed();
        one.push(keep, &t);
        let mut sock = Trickle {
            got: Vec::new(),
            cap: 5,
        };
        one.write_to(&mut sock, &t, &mut [0; 4096]).unwrap();
        assert!(!one.close_last(&t), "a begun response cannot change");
    }
}
