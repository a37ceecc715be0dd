//! One worker: its own listener, its own epoll loop (mio), its connections.
//!
//! This file is event dispatch and I/O only; what a connection does is decided
//! by its [`Conn`] state machine. Each connection is registered once, edge-
//! triggered for reading and writing, and never re-registered. On any event the
//! worker [`drive`](Worker::drive)s the connection: write what it owes, answer
//! requests it holds, read (until a read returns fewer bytes than asked: the
//! socket is then drained, no extra `recv` to see `EAGAIN`), and repeat until the
//! connection waits for the client. [`Worker::release`] is the one place that
//! closes a connection and gives back what it holds.

use super::admin::{self, Admin};
use super::conn::{Conn, Pools};
use super::deadline::{next_timer, Progress, TimerChange};
use super::delay_queue::DelayQueue;
use super::drive::{drive, Outcome, Resources};
use super::timer::{TimerKind, Timers, KINDS};
use crate::http::date::unix_now_coarse;
use crate::http::Templates;
use crate::log::Level;
use crate::metrics::{bump, WorkerCounters};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNAL: Token = Token(2);
const ADMIN_LISTENER: Token = Token(3);
const DELAY_TIMER: Token = Token(4);
const FIRST_CONN: usize = 5;
/// Tokens of admin connections start here, far above any connection slot (slots are
/// bounded by file descriptors), so one comparison tells the two apart.
const ADMIN_FIRST: usize = 1 << 30;

/// Bytes read per `recv` when the connection holds no input.
pub(crate) const READ_SIZE: usize = 32 * 1024;
/// How long to wait for a client to close after the final response (lingering
/// close). Bounded by time, never by a byte count, so that a client still sending
/// cannot make the server close with unread input (a reset) before this.
const LINGER: Duration = Duration::from_secs(5);
/// Reads of [`READ_SIZE`] given to each connection left at the shutdown timeout.
const ABANDON_READS: usize = 16;
/// Retry delay after `accept` failed for lack of descriptors or memory, or while at
/// `--max-connections`.
const ACCEPT_RETRY_MS: u64 = 50;

/// State shared by all workers; touched on accept and close, never per request.
pub(crate) struct Shared {
    /// Stop accepting and drain.
    pub(crate) shutdown: AtomicBool,
    /// Not shutting down: readiness and the health path answer 200. Cleared when the
    /// first signal arrives (after `shutdown` is set, when there is no delay).
    pub(crate) ready: AtomicBool,
    pub(crate) open: AtomicUsize,
    /// 0: no limit.
    pub(crate) max_connections: usize,
}

/// Per-worker settings derived from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) max_head: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

/// What every worker gets a copy of.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) templates: Templates,
    pub(crate) counters: Arc<[WorkerCounters]>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) health_path: Option<Box<[u8]>>,
    /// Process start, in seconds since the Unix epoch (for `/metrics`).
    pub(crate) start_time: f64,
    /// `--status-mix` and `--fault`, when configured.
    pub(crate) chaos: Option<super::chaos::Chaos>,
    /// The run's seed; each worker derives its own generator from it.
    pub(crate) seed: u64,
    /// `--delay`, when configured.
    pub(crate) delay: Option<super::delay::DelaySpec>,
}

/// A connection's socket and state.
struct Slot {
    stream: TcpStream,
    conn: Conn,
    /// The time (µs) this connection is in the delay heap for; 0 for none (a
    /// delay always ends after the clock's start).
    woken_at: u64,
    /// An event reported the client's FIN (`EPOLLRDHUP`). It stays true: a drive by
    /// a delay, a timer or the drain has no event to read it from.
    read_closed: bool,
    /// The socket is known to hold no input (see [`drive`]): cleared by every event.
    drained: bool,
}

/// A worker thread's whole state.
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    admin: Option<Admin>,
    start_time: f64,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    live: usize,
    timers: Timers,
    res: Resources,
    shared: Arc<Shared>,
    settings: Settings,
    start: Instant,
    now: u64,
    /// Connections to drive again this loop (see [`Outcome::Busy`]).
    busy: Vec<usize>,
    /// Connections waiting for a delayed response (`--delay`), earliest first. One
    /// entry per connection and delay; stale entries are skipped.
    delays: DelayQueue,
    accept_retry_at: Option<u64>,
    drain_deadline: Option<u64>,
    last_accept_warning: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX / 4)
}

fn us(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX / 4)
}

/// Bytes waiting in a socket's receive queue (`FIONREAD`, which is `SIOCINQ` for TCP).
fn unread_bytes(stream: &TcpStream) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points to `n`;
    // the descriptor is owned by `stream` and open for the duration of the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 {
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// What the admin listener's answers depend on.
fn admin_view(res: &Resources, start_time: f64) -> admin::View<'_> {
    admin::View {
        counters: &res.counters,
        ready: res.ready,
        start_time,
        mix: res.templates.mix_statuses(),
        faults: res.faults_configured,
        delay: res.delay_configured,
    }
}

impl Worker {
    /// Prepares worker `id` around `listener`; returns it and the waker that starts
    /// its graceful shutdown.
    pub(crate) fn new(
        id: usize,
        listener: std::net::TcpListener,
        admin_listener: Option<std::net::TcpListener>,
        common: Common,
        settings: Settings,
        signal_fd: std::os::fd::RawFd,
    ) -> io::Result<(Worker, Arc<Waker>)> {
        let Common {
            templates,
            counters,
            shared,
            health_path,
            start_time,
            chaos,
            seed,
            delay,
        } = common;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry().register(
            &mut mio::unix::SourceFd(&signal_fd),
            SIGNAL,
            Interest::READABLE,
        )?;
        if delay.is_some() {
            // Accepted connections inherit it. Without it a delay counts from the
            // read, as accurate as the worker is idle.
            if let Err(e) = super::arrival::enable(&listener) {
                crate::log!(
                    Level::Warn,
                    "arrival_stamps_unavailable",
                    "worker={id} error={}",
                    crate::log::quote(&e.to_string())
                );
            }
        }
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut durations = [0; KINDS];
        durations[TimerKind::Header as usize] = ms(settings.header_timeout);
        durations[TimerKind::Idle as usize] = ms(settings.idle_timeout);
        durations[TimerKind::Body as usize] = ms(settings.body_timeout);
        durations[TimerKind::Write as usize] = ms(settings.write_timeout);
        durations[TimerKind::Linger as usize] = ms(LINGER);
        let admin = match admin_listener {
            Some(l) => Some(Admin::new(
                l,
                poll.registry(),
                ADMIN_LISTENER,
                ADMIN_FIRST,
                admin::Durations {
                    header: ms(settings.header_timeout).min(admin::HEAD_DEADLINE_MS),
                    write: ms(settings.write_timeout),
                    linger: admin::LINGER_MS,
                },
            )?),
            None => None,
        };
        let faults_configured = chaos.as_ref().is_some_and(super::chaos::Chaos::has_faults);
        let start = Instant::now();
        let delays = DelayQueue::new(delay.is_some(), start, poll.registry(), DELAY_TIMER);
        let worker = Worker {
            id,
            poll,
            listener: Some(listener),
            admin,
            start_time,
            slots: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            timers: Timers::new(durations),
            res: Resources {
                scratch: vec![0; READ_SIZE].into_boxed_slice(),
                pools: Pools::new(settings.max_head, READ_SIZE),
                templates,
                counters,
                id,
                max_head: settings.max_head,
                health_path,
                ready: true,
                chaos,
                rng: crate::rng::Rng::for_worker(seed, id),
                delay_configured: delay.is_some(),
                faults_configured,
                delay,
                now_us: 0,
                arrivals: super::arrival::Arrivals::new(start),
            },
            shared,
            settings,
            start,
            now: 0,
            busy: Vec::new(),
            delays,
            accept_retry_at: None,
            drain_deadline: None,
            last_accept_warning: None,
        };
        Ok((worker, waker))
    }

    fn tick(&mut self) {
        let elapsed = self.start.elapsed();
        self.now = ms(elapsed);
        self.res.now_us = us(elapsed);
        self.res.templates.refresh_date(unix_now_coarse());
        self.res.ready = self.shared.ready.load(Ordering::Relaxed);
    }

    /// Runs until shutdown completes.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.delays.arm(self.res.now_us);
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io::Error::new(e.kind(), format!("epoll_wait failed: {e}")));
                }
            }
            self.tick();
            // A shutdown signal reported in this batch is handled before the batch's
            // new connections, so that those are answered as part of the drain (or,
            // during a shutdown delay, get the not-ready health answer).
            if self.drain_deadline.is_none() {
                if events.iter().any(|e| e.token() == SIGNAL) {
                    self.await_signal_handled();
                }
                if self.shared.shutdown.load(Ordering::SeqCst) {
                    self.begin_drain();
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER | SIGNAL | DELAY_TIMER => {}
                    ADMIN_LISTENER => self.admin_accept(),
                    Token(t) if t >= ADMIN_FIRST => self.admin_drive(t),
                    Token(t) => self.on_event(t - FIRST_CONN, event),
                }
            }
            self.drive_busy();
            self.expire_delays();
            self.expire_timers();
            self.admin_time();
            if self.accept_retry_at.is_some_and(|t| t <= self.now) {
                self.accept_all();
            }
            if self.shared.shutdown.load(Ordering::Relaxed) && self.drain_deadline.is_none() {
                self.begin_drain();
            }
            if let Some(deadline) = self.drain_deadline {
                if self.live == 0 {
                    // No serving connection is left: stop taking admin connections and
                    // let the ones in flight finish their answer (each has a deadline of
                    // a few seconds; the shutdown deadline bounds them all).
                    match self.admin.as_mut() {
                        Some(a) if a.open() > 0 && self.now < deadline => a.stop_accepting(),
                        _ => return Ok(()),
                    }
                }
                if self.now >= deadline {
                    crate::log!(
                        Level::Warn,
                        "shutdown_timeout",
                        "worker={} open_connections={}",
                        self.id,
                        self.live
                    );
                    self.abandon_all();
                    return Ok(());
                }
            }
        }
    }

    /// A signal is pending: the signal thread, woken by the same signal, logs
    /// `shutdown_started` and clears `ready` (setting `shutdown` first when there is
    /// no shutdown delay) within microseconds. Waiting for that (at most 100 ms, once
    /// per process) keeps the log in order, makes sure the line is written before the
    /// workers can finish and the process exits, and makes this batch's requests see
    /// the new state.
    fn await_signal_handled(&mut self) {
        let give_up = Instant::now() + Duration::from_millis(100);
        while self.shared.ready.load(Ordering::SeqCst) && Instant::now() < give_up {
            std::thread::yield_now();
        }
        self.res.ready = self.shared.ready.load(Ordering::SeqCst);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.busy.is_empty() {
            return Some(Duration::ZERO);
        }
        let elapsed = self.start.elapsed();
        let timers = [
            self.timers.next_deadline(),
            self.accept_retry_at,
            self.drain_deadline,
            self.admin.as_ref().and_then(Admin::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
        // Whole milliseconds, rounded up: wake at or after the deadline, never before.
        .map(|next| Duration::from_millis(next.saturating_sub(ms(elapsed)) + 1));
        let delay = self.delays.poll_timeout(us(elapsed));
        match (timers, delay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- the admin listener -----

    fn admin_accept(&mut self) {
        let view = admin_view(&self.res, self.start_time);
        if let Some(a) = self.admin.as_mut() {
            a.accept_all(self.poll.registry(), self.now, view);
        }
    }

    fn admin_drive(&mut self, token: usize) {
        let view = admin_view(&self.res, self.start_time);
        if let Some(a) = self.admin.as_mut() {
            if let Some(idx) = a.index_of(token) {
                a.drive(idx, self.poll.registry(), self.now, view);
            }
        }
    }

    fn admin_time(&mut self) {
        let view = admin_view(&self.res, self.start_time);
        if let Some(a) = self.admin.as_mut() {
            a.on_time(self.poll.registry(), self.now, view);
        }
    }

    // ----- accepting -----

    fn accept_all(&mut self) {
        self.accept_retry_at = None;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let max = self.shared.max_connections;
            // The drain takes what the kernel already queued past the limit: closing
            // the listener would reset those connections instead of answering them.
            let draining = self.drain_deadline.is_some();
            if max != 0 && !draining && self.shared.open.load(Ordering::Relaxed) >= max {
                self.accept_retry_at = Some(self.now + ACCEPT_RETRY_MS);
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS/ENOMEM: the pending connections stay queued and
                    // edge-triggered epoll will not report them again, so retry on a timer and
                    // whenever a connection closes instead of spinning.
                    bump(&self.res.counters().accept_errors, 1);
                    self.accept_retry_at = Some(self.now + ACCEPT_RETRY_MS);
                    if self
                        .last_accept_warning
                        .is_none_or(|t| self.now >= t + 10_000)
                    {
                        self.last_accept_warning = Some(self.now);
                        crate::log!(
                            Level::Warn,
                            "accept_failed",
                            "worker={} error={}",
                            self.id,
                            crate::log::quote(&e.to_string())
                        );
                    }
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, stream: TcpStream) {
        if self.shared.max_connections != 0 {
            self.shared.open.fetch_add(1, Ordering::Relaxed);
        }
        bump(&self.res.counters().connections_accepted, 1);
        // TCP_NODELAY is inherited from the listening socket: no setsockopt here.
        let idx = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[idx] = Some(Slot {
            stream,
            conn: Conn::new(),
            woken_at: 0,
            read_closed: false,
            drained: false,
        });
        self.live += 1;
        self.timers.arm(idx, TimerKind::Header, self.now);
        if self.drain_deadline.is_some() {
            // Accepted from the queue at shutdown: answer what it sent, then close.
            if self.drain_one(idx) {
                return;
            }
        }
        // Clients usually send their request right after connecting: read it now. A
        // request that closes the connection is then answered and closed without the
        // connection ever being added to epoll.
        self.drive(idx);
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        // Registered once, for both directions, edge-triggered: never re-registered.
        // Readiness that arrived since the read above is reported by the registration.
        let token = Token(idx + FIRST_CONN);
        if let Err(e) = self.poll.registry().register(
            &mut slot.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            crate::log!(
                Level::Debug,
                "register_failed",
                "error={}",
                crate::log::quote(&e.to_string())
            );
            self.release(idx);
        }
    }

    /// Closes connection `idx` and gives back everything it holds: its input and
    /// output buffers (including output not sent), its timer and its slot. The only
    /// place a connection is closed.
    fn release(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.timers.disarm(idx);
        slot.conn.release(&mut self.res.pools);
        // Closing the descriptor removes it from the epoll set; no deregister call needed.
        drop(slot.stream);
        self.free_slots.push(idx);
        self.live -= 1;
        bump(&self.res.counters().connections_closed, 1);
        if self.shared.max_connections != 0 {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
        }
        if self.accept_retry_at.is_some() {
            // A descriptor (or a connection slot) is free again: accept now.
            self.accept_retry_at = Some(self.now);
        }
    }

    // ----- serving -----

    /// An epoll event for connection `idx`: input may have arrived (and with
    /// `read_closed`, the client's FIN).
    fn on_event(&mut self, idx: usize, event: &mio::event::Event) {
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if event.is_error() {
            // The connection is dead (a reset, or a retransmission timeout): nothing
            // owed can be delivered. Free it now, not when some state (a delay, a
            // closing answer waiting for room) would next try the socket.
            self.release(idx);
            return;
        }
        slot.read_closed |= event.is_read_closed();
        slot.drained = false;
        self.drive(idx);
    }

    /// Moves connection `idx` forward as far as its socket allows, then sets its
    /// timer or closes it.
    fn drive(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if self.res.delay.is_some() {
            // A delayed answer may be due now: the loop's clock can be a whole batch
            // of connections old by now (when a head arrived, reads learn from the
            // kernel's stamps).
            self.res.now_us = us(self.start.elapsed());
        }
        let outcome = drive(
            &mut slot.stream,
            &mut slot.conn,
            &mut self.res,
            slot.read_closed,
            &mut slot.drained,
        );
        match outcome {
            Outcome::Waiting(progress) => self.update_timer(idx, progress),
            Outcome::Busy(progress) => {
                self.update_timer(idx, progress);
                self.mark_busy(idx);
            }
            Outcome::StartedLinger { busy } => {
                self.timers.arm(idx, TimerKind::Linger, self.now);
                if busy {
                    self.mark_busy(idx);
                }
            }
            Outcome::Lingering { busy } => {
                if busy {
                    self.mark_busy(idx);
                }
            }
            Outcome::Close => self.release(idx),
            Outcome::Reset => {
                // An injected fault: with a zero linger time, close sends RST.
                let _ = socket2::SockRef::from(&slot.stream).set_linger(Some(Duration::ZERO));
                self.release(idx);
            }
        }
    }

    /// Queues `idx` for another turn this loop, once.
    fn mark_busy(&mut self, idx: usize) {
        if !self.busy.contains(&idx) {
            self.busy.push(idx);
        }
    }

    /// Connections that used their turn with input left get another, once per loop.
    fn drive_busy(&mut self) {
        let mut turn = std::mem::take(&mut self.busy);
        for &idx in &turn {
            self.drive(idx);
        }
        turn.clear();
        if self.busy.is_empty() {
            self.busy = turn; // keep the allocation
        }
    }

    fn update_timer(&mut self, idx: usize, progress: Progress) {
        let now_us = self.res.now_us;
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if let Some(t) = slot.conn.delayed_until(now_us) {
            if slot.woken_at != t {
                slot.woken_at = t;
                self.delays.push(t, idx);
            }
        }
        match next_timer(self.timers.kind(idx), slot.conn.waiting(now_us), progress) {
            TimerChange::Keep => {}
            TimerChange::Start(kind) => self.timers.arm(idx, kind, self.now),
            TimerChange::Stop => self.timers.disarm(idx),
        }
    }

    /// Drives the connections whose delayed response may now be written.
    fn expire_delays(&mut self) {
        while let Some((t, idx)) = self.delays.pop_due(self.res.now_us) {
            let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if slot.woken_at == t {
                slot.woken_at = 0;
                self.drive(idx);
            }
        }
    }

    fn expire_timers(&mut self) {
        while let Some((idx, _kind)) = self.timers.pop_expired(self.now) {
            bump(&self.res.counters().timeouts, 1);
            let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let now_us = self.res.now_us;
            let (mut ctx, _) = self.res.ctx(false);
            let waited = slot.conn.waiting(now_us);
            if slot.conn.on_timeout(waited, &mut ctx) {
                self.release(idx);
            } else {
                self.drive(idx);
            }
        }
    }

    // ----- shutdown -----

    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        self.drain_deadline = Some(self.now + ms(self.settings.shutdown_timeout));
        // Whatever this loop read first, from now on the health answers say "not ready".
        self.res.ready = false;
        // Delayed answers go out now, later ones are not delayed, and no new fault
        // (a stall would hold the drain) is drawn.
        self.res.delay = None;
        self.res.chaos = self
            .res
            .chaos
            .take()
            .and_then(super::chaos::Chaos::without_faults);
        // Connections already in the accept queue were promised an answer by the
        // kernel: take them before closing the listener, which would reset them.
        self.accept_all();
        self.listener = None;
        self.accept_retry_at = None;
        for idx in 0..self.slots.len() {
            if self.slots[idx].is_some() && !self.drain_one(idx) {
                self.drive(idx);
            }
        }
        crate::log!(
            Level::Info,
            "shutdown_draining",
            "worker={} open_connections={}",
            self.id,
            self.live
        );
    }

    /// Starts draining connection `idx`; returns `true` when it was closed.
    fn drain_one(&mut self, idx: usize) -> bool {
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return true;
        };
        let unread = unread_bytes(&slot.stream);
        let (mut ctx, _) = self.res.ctx(false);
        if slot.conn.begin_drain(unread, &mut ctx) {
            self.release(idx);
            return true;
        }
        false
    }

    /// The shutdown timeout passed: close what is left. Input already received is
    /// read and dropped first, so that the close sends FIN rather than a reset and
    /// the kernel still delivers what was written.
    fn abandon_all(&mut self) {
        for idx in 0..self.slots.len() {
            if let Some(slot) = self.slots[idx].as_mut() {
                for _ in 0..ABANDON_READS {
                    match slot.stream.read(&mut self.res.scratch) {
                        Ok(n) if n == self.res.scratch.len() => {}
                        _ => break,
                    }
                }
                self.release(idx);
            }
        }
    }
}
