//! Connections waiting for a delayed response (`--delay`), earliest first, and the
//! timer that wakes the worker when the earliest is due.
//!
//! Deadlines are microseconds on the worker's clock. A binary heap holds one
//! `(deadline, slot)` entry per waiting connection: O(log n) per request, no
//! allocation once it has grown. An entry whose connection has moved on is
//! recognised by the caller and skipped when it comes up.
//!
//! epoll's timeout has millisecond resolution (mio rounds it up), which would
//! make every delayed answer up to 1 ms late and, at thousands of connections,
//! cost a measurable share of the throughput Little's law promises. So the
//! worker registers a `timerfd` on `CLOCK_MONOTONIC` (the clock `Instant` reads)
//! set to an absolute time. It is set only when the earliest deadline moves
//! earlier or the last one fired, which with a fixed delay is once per wake-up.
//! Deadlines are rounded up to [`GRANULE_US`], so the connections due within
//! one granule are answered in one wake-up: an answer is never early, and late by
//! less than a granule plus the loop's own work.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The timer's resolution: deadlines within one granule share a wake-up.
pub(crate) const GRANULE_US: u64 = 100;

/// A `timerfd` armed at absolute times on the worker's clock.
struct WakeTimer {
    fd: OwnedFd,
    /// `CLOCK_MONOTONIC` at the worker clock's zero, in nanoseconds (or a few
    /// nanoseconds after it: the timer may fire late by that much, never early).
    base_ns: u64,
    /// The deadline (µs) the timer is set for; 0 when it is not set.
    armed: u64,
}

impl WakeTimer {
    fn new(start: Instant) -> io::Result<Self> {
        // SAFETY: timerfd_create takes two integer arguments and returns a new
        // descriptor or -1; it touches no memory of ours.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("timerfd_create: {e}")));
        }
        // SAFETY: `fd` was just returned by timerfd_create and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Read the worker's clock first: the monotonic time read after it is no
        // earlier than the clock's zero plus `before`.
        let before = start.elapsed();
        let now = monotonic_ns()?;
        let before_ns = u64::try_from(before.as_nanos()).unwrap_or(u64::MAX);
        Ok(WakeTimer {
            fd,
            base_ns: now.saturating_sub(before_ns),
            armed: 0,
        })
    }

    fn arm(&mut self, at_us: u64) -> io::Result<()> {
        let ns = self.base_ns.saturating_add(at_us.saturating_mul(1000));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                // time_t is 32 or 64 bits wide, depending on the target and libc.
                tv_sec: (ns / 1_000_000_000).try_into().unwrap_or(i32::MAX as _),
                // Below 10^9: fits every c_long.
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: the descriptor is a timerfd owned by `self`; `spec` is a valid
        // itimerspec that the call only reads, and the old value is not asked for.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = at_us;
        Ok(())
    }
}

fn monotonic_ns() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Delayed connections, earliest deadline first, and what wakes the worker then.
pub(crate) struct DelayQueue {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// `None` without `--delay`, or when no timerfd could be made: the worker then
    /// falls back to the poll timeout ([`DelayQueue::poll_timeout`]).
    timer: Option<WakeTimer>,
}

impl DelayQueue {
    /// A queue; with `wake` a timerfd registered with `registry` as `token`.
    pub(crate) fn new(
        wake: bool,
        start: Instant,
        registry: &mio::Registry,
        token: mio::Token,
    ) -> DelayQueue {
        let timer = if wake {
            let made = WakeTimer::new(start).and_then(|t| {
                registry
                    .register(
                        &mut mio::unix::SourceFd(&t.fd.as_raw_fd()),
                        token,
                        mio::Interest::READABLE,
                    )
                    .map(|()| t)
            });
            match made {
                Ok(t) => Some(t),
                Err(e) => {
                    crate::log!(
                        crate::log::Level::Warn,
                        "delay_timer_unavailable",
                        "error={} effect=delays_rounded_up_to_1ms",
                        crate::log::quote(&e.to_string())
                    );
                    None
                }
            }
        } else {
            None
        };
        DelayQueue {
            heap: BinaryHeap::new(),
            timer,
        }
    }

    /// Connection `idx` waits until `t` (µs).
    #[inline]
    pub(crate) fn push(&mut self, t: u64, idx: usize) {
        self.heap.push(Reverse((t, idx)));
    }

    /// The earliest entry, when it is due at `now` (µs).
    #[inline]
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, usize)> {
        match self.heap.peek() {
            Some(&Reverse((t, idx))) if t <= now => {
                self.heap.pop();
                Some((t, idx))
            }
            _ => None,
        }
    }

    /// Sets the timer for the earliest deadline, before the worker sleeps at `now`
    /// (µs). It is left alone while it is set for the right granule or earlier.
    pub(crate) fn arm(&mut self, now: u64) {
        let (Some(timer), Some(&Reverse((t, _)))) = (self.timer.as_mut(), self.heap.peek()) else {
            return;
        };
        let at = t.div_ceil(GRANULE_US).saturating_mul(GRANULE_US);
        let fired = timer.armed <= now;
        if (timer.armed == 0 || fired || at < timer.armed) && timer.arm(at).is_err() {
            // A timer that cannot be set would leave answers waiting: fall back to
            // the poll timeout for good.
            self.timer = None;
        }
    }

    /// The poll timeout the earliest deadline needs at `now` (µs), when there is
    /// no timer to wake the worker.
    pub(crate) fn poll_timeout(&self, now: u64) -> Option<Duration> {
        if self.timer.is_some() {
            return None;
        }
        // mio rounds the wait up to the next millisecond: answers leave up to that
        // much late, never early.
        self.heap
            .peek()
            .map(|&Reverse((t, _))| Duration::from_micros(t.saturating_sub(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (DelayQueue, mio::Poll, Instant) {
        let poll = mio::Poll::new().expect("epoll");
        let start = Instant::now();
        let q = DelayQueue::new(true, start, poll.registry(), mio::Token(7));
        assert!(q.timer.is_some(), "a timerfd is available on Linux");
        (q, poll, start)
    }

    fn now_us(start: Instant) -> u64 {
        u64::try_from(start.elapsed().as_micros()).expect("small")
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let (mut q, _poll, _) = queue();
        q.push(300, 1);
        q.push(100, 2);
        q.push(200, 3);
        assert_eq!(q.pop_due(99), None);
        assert_eq!(q.pop_due(250), Some((100, 2)));
        assert_eq!(q.pop_due(250), Some((200, 3)));
        assert_eq!(q.pop_due(250), None);
        assert_eq!(q.pop_due(300), Some((300, 1)));
        assert_eq!(q.poll_timeout(0), None, "the timer wakes the worker");
    }

    #[test]
    fn the_timer_wakes_the_poll_after_the_deadline_not_before() {
        let (mut q, mut poll, start) = queue();
        let mut events = mio::Events::with_capacity(4);
        let deadline = now_us(start) + 3_000;
        q.push(deadline, 1);
        q.arm(now_us(start));
        poll.poll(&mut events, Some(Duration::from_secs(2)))
            .expect("poll");
        let woke = now_us(start);
        assert!(
            events.iter().any(|e| e.token() == mio::Token(7)),
            "the timer's event"
        );
        assert!(woke >= deadline, "woke at {woke} µs, before {deadline} µs");
        assert!(
            woke < deadline + 500_000,
            "woke at {woke} µs for {deadline} µs"
        );
        // An earlier deadline re-arms; a later one leaves the timer alone.
        assert_eq!(q.pop_due(woke), Some((deadline, 1)));
        q.push(woke + 100_000, 2);
        q.arm(woke);
        let armed = q.timer.as_ref().map(|t| t.armed);
        q.push(woke + 200_000, 3);
        q.arm(woke);
        assert_eq!(q.timer.as_ref().map(|t| t.armed), armed);
        q.push(woke + 20_000, 4);
        q.arm(woke);
        let at = (woke + 20_000).div_ceil(GRANULE_US) * GRANULE_US;
        assert_eq!(q.timer.as_ref().map(|t| t.armed), Some(at));
    }

    #[test]
    fn without_a_timer_the_poll_timeout_covers_the_earliest() {
        let poll = mio::Poll::new().expect("epoll");
        let mut q = DelayQueue::new(false, Instant::now(), poll.registry(), mio::Token(7));
        assert_eq!(q.poll_timeout(0), None);
        q.push(5_000, 1);
        q.push(9_000, 2);
        assert_eq!(q.poll_timeout(1_000), Some(Duration::from_micros(4_000)));
        q.arm(1_000); // no timer: nothing to set
        assert_eq!(q.poll_timeout(6_000), Some(Duration::ZERO));
    }
}
