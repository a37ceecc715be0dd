//! Per-worker request counters.
//!
//! Each worker owns one [`WorkerCounters`] slot and is the only writer of it; the
//! metrics thread is the only reader. Slots are aligned to 128 bytes (two cache
//! lines, which also covers the adjacent-line prefetcher on x86) so that two
//! workers never write to the same cache line. Writes are `Relaxed` atomic
//! load+store pairs, which compile to plain `mov`/`add` on every target we ship:
//! there is no locked read-modify-write on the request path because each slot
//! has exactly one writer.

use crate::http::response::MAX_MIX;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one worker thread. Every field only ever grows, except
/// `connections_open`, which is a level (accepted minus closed).
#[repr(align(128))]
#[derive(Default, Debug)]
pub(crate) struct WorkerCounters {
    /// Requests whose head was parsed completely (answered, any status).
    pub(crate) requests: AtomicU64,
    /// Responses with a 2xx status.
    pub(crate) responses_2xx: AtomicU64,
    /// Responses with a 3xx status.
    pub(crate) responses_3xx: AtomicU64,
    /// Responses with a 4xx status.
    pub(crate) responses_4xx: AtomicU64,
    /// Responses with a 5xx status.
    pub(crate) responses_5xx: AtomicU64,
    /// Bytes handed to the kernel by `send`.
    pub(crate) bytes_sent: AtomicU64,
    /// Connections accepted.
    pub(crate) connections_accepted: AtomicU64,
    /// Connections closed (by either side).
    pub(crate) connections_closed: AtomicU64,
    /// Connections closed because a header, idle, write or linger timer fired.
    pub(crate) timeouts: AtomicU64,
    /// Requests rejected as malformed (400, 414, 431, 505, ...).
    pub(crate) parse_errors: AtomicU64,
    /// `accept` calls that failed with something other than "would block".
    pub(crate) accept_errors: AtomicU64,
    /// Injected faults (`--fault`), by kind.
    pub(crate) faults_reset: AtomicU64,
    pub(crate) faults_close: AtomicU64,
    pub(crate) faults_stall: AtomicU64,
    /// Responses with each status of `--status-mix`, in its order.
    pub(crate) mixed: [AtomicU64; MAX_MIX],
    /// Requests given a `--delay`, and the sum of their delays in microseconds.
    pub(crate) delayed: AtomicU64,
    pub(crate) delay_us: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline(always)]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    // Single writer: a relaxed load and store is exact and avoids `lock xadd`.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// A point-in-time copy of one or more workers' counters, summed.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    pub bytes_sent: u64,
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub timeouts: u64,
    pub parse_errors: u64,
    pub accept_errors: u64,
    pub faults_reset: u64,
    pub faults_close: u64,
    pub faults_stall: u64,
    pub mixed: [u64; MAX_MIX],
    pub delayed: u64,
    pub delay_us: u64,
}

impl Snapshot {
    /// Sums the current values of every slot.
    pub(crate) fn sum(slots: &[WorkerCounters]) -> Snapshot {
        let mut s = Snapshot::default();
        for c in slots {
            let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.requests += r(&c.requests);
            s.responses_2xx += r(&c.responses_2xx);
            s.responses_3xx += r(&c.responses_3xx);
            s.responses_4xx += r(&c.responses_4xx);
            s.responses_5xx += r(&c.responses_5xx);
            s.bytes_sent += r(&c.bytes_sent);
            s.connections_accepted += r(&c.connections_accepted);
            s.connections_closed += r(&c.connections_closed);
            s.timeouts += r(&c.timeouts);
            s.parse_errors += r(&c.parse_errors);
            s.accept_errors += r(&c.accept_errors);
            s.faults_reset += r(&c.faults_reset);
            s.faults_close += r(&c.faults_close);
            s.faults_stall += r(&c.faults_stall);
            s.delayed += r(&c.delayed);
            s.delay_us += r(&c.delay_us);
            for (sum, m) in s.mixed.iter_mut().zip(&c.mixed) {
                *sum += r(m);
            }
        }
        s
    }

    /// Connections currently open: accepted minus closed.
    pub(crate) fn connections_open(&self) -> u64 {
        self.connections_accepted
            .saturating_sub(self.connections_closed)
    }
}
