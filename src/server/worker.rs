//! One worker: its own listener, its own epoll loop (mio), its connections.
//!
//! The loop is edge-triggered. A readable connection is read until a read returns
//! fewer bytes than asked (the socket is then drained: no extra `recv` to see
//! `EAGAIN`), every complete request in those bytes is answered into one output
//! buffer, and that buffer goes out with one `send`. Write interest is registered
//! only when the kernel does not take everything, and dropped when it has.

use super::conn::{process, Conn, Ctx, Phase};
use super::pool::BufPool;
use super::timer::{TimerKind, Timers};
use crate::http::date::unix_now_coarse;
use crate::http::Templates;
use crate::log::Level;
use crate::metrics::{bump, WorkerCounters};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Bytes read per `recv` when the connection holds no partial request.
const READ_SIZE: usize = 32 * 1024;
/// Stop reading from a connection whose unsent output reaches this (backpressure).
const OUTPUT_CAP: usize = 64 * 1024;
/// Nominal capacity of a pooled output buffer.
const OUTPUT_BUF: usize = 16 * 1024;
/// Free buffers a worker keeps per pool.
const POOL_FREE: usize = 64;
/// How long to wait for a client to close after the final response.
const LINGER: Duration = Duration::from_secs(2);
/// How much input to discard while lingering before giving up.
const LINGER_MAX_BYTES: usize = 1 << 20;
/// Retry delay after `accept` failed for lack of descriptors or memory, or while at
/// `--max-connections`.
const ACCEPT_RETRY_MS: u64 = 50;

/// State shared by all workers; touched on accept and close, never per request.
pub struct Shared {
    pub shutdown: AtomicBool,
    pub open: AtomicUsize,
    /// 0: no limit.
    pub max_connections: usize,
}

/// Per-worker settings derived from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_head: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// A worker thread's whole state.
pub struct Worker {
    id: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    free_slots: Vec<usize>,
    live: usize,
    timers: Timers,
    inputs: BufPool,
    outputs: BufPool,
    scratch: Box<[u8]>,
    out: Vec<u8>,
    templates: Templates,
    counters: Arc<[WorkerCounters]>,
    shared: Arc<Shared>,
    settings: Settings,
    start: Instant,
    now: u64,
    accept_retry_at: Option<u64>,
    drain_deadline: Option<u64>,
    last_accept_warning: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX / 4)
}

impl Worker {
    /// Prepares worker `id` around `listener`; returns it and the waker that starts
    /// its graceful shutdown.
    pub fn new(
        id: usize,
        listener: std::net::TcpListener,
        templates: Templates,
        counters: Arc<[WorkerCounters]>,
        shared: Arc<Shared>,
        settings: Settings,
    ) -> io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let timers = Timers::new([
            ms(settings.header_timeout),
            ms(settings.idle_timeout),
            ms(settings.write_timeout),
            ms(LINGER),
        ]);
        let worker = Worker {
            id,
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            timers,
            inputs: BufPool::fixed(settings.max_head + 1, POOL_FREE),
            outputs: BufPool::growable(OUTPUT_BUF, POOL_FREE),
            scratch: vec![0; READ_SIZE].into_boxed_slice(),
            out: Vec::with_capacity(OUTPUT_CAP),
            templates,
            counters,
            shared,
            settings,
            start: Instant::now(),
            now: 0,
            accept_retry_at: None,
            drain_deadline: None,
            last_accept_warning: None,
        };
        Ok((worker, waker))
    }

    fn counters(&self) -> &WorkerCounters {
        &self.counters[self.id]
    }

    fn tick(&mut self) {
        self.now = ms(self.start.elapsed());
        self.templates.refresh_date(unix_now_coarse());
    }

    /// Runs until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io::Error::new(e.kind(), format!("epoll_wait failed: {e}")));
                }
            }
            self.tick();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.begin_drain(),
                    Token(t) => {
                        let idx = t - FIRST_CONN;
                        if event.is_writable() {
                            self.on_writable(idx);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(idx, event.is_read_closed() || event.is_error());
                        }
                    }
                }
            }
            self.expire_timers();
            if self.accept_retry_at.is_some_and(|t| t <= self.now) {
                self.accept_all();
            }
            if self.shared.shutdown.load(Ordering::Relaxed) && self.drain_deadline.is_none() {
                self.begin_drain();
            }
            if let Some(deadline) = self.drain_deadline {
                if self.live == 0 || self.now >= deadline {
                    if self.live > 0 {
                        crate::log!(
                            Level::Warn,
                            "shutdown_timeout",
                            "worker={} open_connections={}",
                            self.id,
                            self.live
                        );
                    }
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let next = [
            self.timers.next_deadline(),
            self.accept_retry_at,
            self.drain_deadline,
        ]
        .into_iter()
        .flatten()
        .min()?;
        // Round up so we wake at or after the deadline, never just before it.
        Some(Duration::from_millis(
            next.saturating_sub(ms(self.start.elapsed())) + 1,
        ))
    }

    // ----- accepting -----

    fn accept_all(&mut self) {
        self.accept_retry_at = None;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let max = self.shared.max_connections;
            if max != 0 && self.shared.open.load(Ordering::Relaxed) >= max {
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
                    bump(&self.counters().accept_errors, 1);
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
        bump(&self.counters().connections_accepted, 1);
        // TCP_NODELAY is inherited from the listening socket: no setsockopt here.
        let idx = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[idx] = Some(Conn::new(stream));
        self.live += 1;
        self.timers.arm(idx, TimerKind::Header, self.now);
        // Clients usually send their request right after connecting: read it now. A
        // request that closes the connection is then answered and closed without the
        // connection ever being added to epoll.
        self.on_readable(idx, false);
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if !conn.registered {
            let interest = if conn.write_interest {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            // Input that arrived since the read above is reported by the registration itself.
            let token = Token(idx + FIRST_CONN);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut conn.stream, token, interest)
            {
                crate::log!(
                    Level::Debug,
                    "register_failed",
                    "error={}",
                    crate::log::quote(&e.to_string())
                );
                return self.close(idx);
            }
            conn.registered = true;
        }
    }

    fn closed_accounting(&mut self) {
        bump(&self.counters().connections_closed, 1);
        if self.shared.max_connections != 0 {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
        }
        if self.accept_retry_at.is_some() {
            // A descriptor (or a connection slot) is free again: accept now.
            self.accept_retry_at = Some(self.now);
        }
    }

    fn close(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.timers.disarm(idx);
        if let Some(b) = conn.input {
            self.inputs.give(b);
        }
        if let Some(b) = conn.output {
            self.outputs.give(b);
        }
        // Closing the descriptor removes it from the epoll set; no deregister call needed.
        drop(conn.stream);
        self.free_slots.push(idx);
        self.live -= 1;
        self.closed_accounting();
    }

    // ----- reading -----

    fn on_readable(&mut self, idx: usize, read_closed: bool) {
        let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
            return;
        };
        match conn.phase {
            Phase::Linger => return self.linger_read(idx),
            // The final response is still queued; the rest is read while lingering.
            Phase::Closing => return,
            _ => {}
        }
        let mut progressed = false;
        let mut eof = false;
        let mut linger_needed = false;
        loop {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            if conn.pending_output() + self.out.len() >= OUTPUT_CAP {
                break; // backpressure: resume when the client has read
            }
            let (res, requested) = match conn.input.as_mut() {
                Some(buf) => {
                    let spare = &mut buf[conn.input_len..];
                    let requested = spare.len();
                    (conn.stream.read(spare), requested)
                }
                None => (conn.stream.read(&mut self.scratch), self.scratch.len()),
            };
            let n = match res {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(idx),
            };
            progressed = true;
            let drained = n < requested && !read_closed;
            let unclean = self.process_read(idx, n);
            let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
                return;
            };
            if conn.phase == Phase::Closing {
                linger_needed = unclean || !drained;
                break;
            }
            if self.out.len() >= OUTPUT_CAP / 2 {
                self.flush(idx);
            }
            if drained {
                break;
            }
        }
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        conn.linger_needed |= linger_needed;
        if eof {
            // The client will send nothing more; answer what it asked, then close.
            if conn.phase == Phase::Head && self.out.is_empty() && conn.pending_output() == 0 {
                return self.close(idx);
            }
            conn.phase = Phase::Closing;
            conn.linger_needed = false;
        }
        self.flush(idx);
        self.rearm(idx, progressed);
    }

    /// Runs the request path over the `n` bytes just read. Returns whether a close
    /// left input behind (error, or bytes after the closing request).
    fn process_read(&mut self, idx: usize, n: usize) -> bool {
        let Worker {
            conns,
            scratch,
            out,
            templates,
            counters,
            settings,
            inputs,
            id,
            drain_deadline,
            ..
        } = self;
        let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        let mut ctx = Ctx {
            templates,
            out,
            counters: &counters[*id],
            max_head: settings.max_head,
            draining: drain_deadline.is_some(),
            unclean_close: false,
        };
        match conn.input.as_mut() {
            Some(buf) => {
                conn.input_len += n;
                let used = process(&mut conn.phase, &buf[..conn.input_len], &mut ctx);
                buf.copy_within(used..conn.input_len, 0);
                conn.input_len -= used;
                if conn.input_len == 0 {
                    if let Some(b) = conn.input.take() {
                        inputs.give(b);
                    }
                }
            }
            None => {
                let data = &scratch[..n];
                let used = process(&mut conn.phase, data, &mut ctx);
                if used < n {
                    // An incomplete head: keep it in a pooled buffer until the rest arrives.
                    let mut buf = inputs.take();
                    let rest = &data[used..];
                    buf[..rest.len()].copy_from_slice(rest);
                    conn.input_len = rest.len();
                    conn.input = Some(buf);
                }
            }
        }
        ctx.unclean_close
    }

    fn linger_read(&mut self, idx: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => return self.close(idx),
                Ok(n) => {
                    conn.lingered += n;
                    if conn.lingered > LINGER_MAX_BYTES {
                        return self.close(idx);
                    }
                    if n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(idx),
            }
        }
    }

    // ----- writing -----

    fn on_writable(&mut self, idx: usize) {
        let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
            return;
        };
        if conn.pending_output() == 0 {
            return;
        }
        self.flush(idx);
        let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
            return;
        };
        if conn.pending_output() == 0
            && matches!(
                conn.phase,
                Phase::Head | Phase::LengthBody { .. } | Phase::ChunkedBody { .. }
            )
        {
            // Reading may have stopped for backpressure; input that arrived meanwhile
            // produced no new edge, so look now.
            self.on_readable(idx, false);
        } else {
            self.rearm(idx, true);
        }
    }

    /// Sends the worker's output buffer (and anything still queued) to the connection.
    fn flush(&mut self, idx: usize) {
        let Worker {
            conns,
            out,
            outputs,
            counters,
            id,
            poll,
            ..
        } = self;
        let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let mut failed = false;
        if let Some(queued) = conn.output.as_mut() {
            queued.extend_from_slice(out);
            out.clear();
            let sent = write_some(&mut conn.stream, &queued[conn.output_sent..], &mut failed);
            conn.output_sent += sent;
            bump(&counters[*id].bytes_sent, sent as u64);
            if conn.output_sent == queued.len() {
                if let Some(b) = conn.output.take() {
                    outputs.give(b);
                }
                conn.output_sent = 0;
            }
        } else if !out.is_empty() {
            let sent = write_some(&mut conn.stream, out, &mut failed);
            bump(&counters[*id].bytes_sent, sent as u64);
            if sent < out.len() && !failed {
                let mut queued = outputs.take();
                queued.extend_from_slice(&out[sent..]);
                conn.output = Some(queued);
                conn.output_sent = 0;
            }
            out.clear();
        }
        if failed {
            return self.close(idx);
        }
        let pending = conn.pending_output() > 0;
        if pending != conn.write_interest {
            // A connection not registered yet gets its interest when it is registered.
            if conn.registered {
                let interest = if pending {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if poll
                    .registry()
                    .reregister(&mut conn.stream, Token(idx + FIRST_CONN), interest)
                    .is_err()
                {
                    return self.close(idx);
                }
            }
            conn.write_interest = pending;
        }
        if !pending && conn.phase == Phase::Closing {
            self.finish_close(idx);
        }
    }

    /// Everything is sent and the connection must close.
    fn finish_close(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if !conn.linger_needed {
            return self.close(idx);
        }
        // Send FIN now, but keep reading: closing with unread input would send a reset,
        // and a reset can destroy the response before the client has read it.
        let _ = conn.stream.shutdown(Shutdown::Write);
        conn.phase = Phase::Linger;
        self.timers.arm(idx, TimerKind::Linger, self.now);
        self.linger_read(idx);
    }

    // ----- timers -----

    /// Arms the timer that fits the connection's state.
    fn rearm(&mut self, idx: usize, progressed: bool) {
        let draining = self.drain_deadline.is_some();
        let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
            return;
        };
        if draining && conn.is_idle() {
            return self.close(idx);
        }
        let current = self.timers.kind(idx);
        let wanted = if conn.pending_output() > 0 {
            TimerKind::Write
        } else {
            match conn.phase {
                Phase::Linger => return,
                Phase::Closing => TimerKind::Write,
                Phase::Head if conn.input_len > 0 => {
                    if current == Some(TimerKind::Header) {
                        return; // the head's deadline runs from its first byte
                    }
                    TimerKind::Header
                }
                _ if !progressed => return,
                _ => TimerKind::Idle,
            }
        };
        self.timers.arm(idx, wanted, self.now);
    }

    fn expire_timers(&mut self) {
        while let Some((idx, kind)) = self.timers.pop_expired(self.now) {
            bump(&self.counters().timeouts, 1);
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if kind == TimerKind::Header && conn.input_len > 0 && conn.pending_output() == 0 {
                // Slowloris: a head started but not finished in time.
                bump(&self.counters[self.id].responses_4xx, 1);
                self.out.extend_from_slice(self.templates.error(408));
                conn.phase = Phase::Closing;
                conn.linger_needed = true;
                self.flush(idx);
                if self.conns.get(idx).is_some_and(Option::is_some)
                    && self.timers.kind(idx).is_none()
                {
                    self.timers.arm(idx, TimerKind::Write, self.now);
                }
            } else {
                self.close(idx);
            }
        }
    }

    // ----- shutdown -----

    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() || !self.shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
        self.drain_deadline = Some(self.now + ms(self.settings.shutdown_timeout));
        // Stop accepting at once: dropping the listener closes it.
        self.listener = None;
        self.accept_retry_at = None;
        for idx in 0..self.conns.len() {
            let idle = self.conns[idx].as_ref().is_some_and(Conn::is_idle);
            if idle {
                // A request may have arrived unseen; answer it (with Connection: close).
                self.on_readable(idx, false);
                if self.conns[idx].as_ref().is_some_and(Conn::is_idle) {
                    self.close(idx);
                }
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
}

/// Writes as much of `buf` as the socket takes. Sets `failed` on a hard error.
fn write_some(stream: &mut TcpStream, buf: &[u8], failed: &mut bool) -> usize {
    let mut sent = 0;
    while sent < buf.len() {
        match stream.write(&buf[sent..]) {
            Ok(0) => {
                *failed = true;
                break;
            }
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                *failed = true;
                break;
            }
        }
    }
    sent
}
