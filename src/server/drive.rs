//! Moving one connection forward on its socket: the I/O half of the connection.
//!
//! [`drive`] writes what the connection owes, lets it answer requests it holds,
//! reads, and repeats until the connection waits for its client; the
//! [`Conn`] state machine decides every step. It is generic over the socket, so
//! the worker runs it on a `TcpStream` and the model test on a simulated socket
//! that takes writes of any size, resets, or ends at any point.

use super::arrival;
use super::conn::{Conn, Ctx, Pools, Step};
use super::deadline::Progress;
use crate::http::Templates;
use crate::metrics::{bump, WorkerCounters};
use std::io::{self, Read, Write};

/// Reads one [`drive`] (or one round of lingering) makes before it lets the
/// worker's other connections have their turn, so that one client flooding input
/// cannot hold the worker. The connection is then driven again in the same loop.
pub(crate) const READS_PER_TURN: usize = 16;

/// A connected stream socket.
pub(crate) trait Socket: Read + Write {
    /// Sends FIN: nothing more will be written.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Reads like [`Read::read`], and also returns the arrival stamp of the last
    /// packet read (`CLOCK_REALTIME` ns, see [`arrival`]) if the socket has one.
    fn read_stamped(&mut self, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
        self.read(buf).map(|n| (n, None))
    }

    /// Whether the socket's stamps may be earlier than the data they complete
    /// (it received segments out of order); see [`arrival::reordered`].
    fn reordered(&self) -> bool {
        true
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn read_stamped(&mut self, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
        arrival::recv_stamped(self, buf)
    }

    fn reordered(&self) -> bool {
        arrival::reordered(self)
    }
}

/// What a worker's connections share: the scratch buffer reads go into when a
/// connection holds no input, the pools of input buffers and output queues, the
/// responses and the counters.
pub(crate) struct Resources {
    pub(crate) scratch: Box<[u8]>,
    pub(crate) pools: Pools,
    pub(crate) templates: Templates,
    pub(crate) counters: std::sync::Arc<[WorkerCounters]>,
    pub(crate) id: usize,
    pub(crate) max_head: usize,
    /// `--health-path`, when configured.
    pub(crate) health_path: Option<Box<[u8]>>,
    /// Not shutting down (refreshed by the worker once per loop).
    pub(crate) ready: bool,
    /// `--status-mix` and `--fault`, when configured.
    pub(crate) chaos: Option<super::chaos::Chaos>,
    /// This worker's random numbers.
    pub(crate) rng: crate::rng::Rng,
    /// `--delay`, when configured; `None` once the server drains.
    pub(crate) delay: Option<super::delay::DelaySpec>,
    /// The worker's clock in microseconds, refreshed once per loop (and, with
    /// `--delay`, before each connection is driven).
    pub(crate) now_us: u64,
    /// With `--delay`: when the bytes of each read had arrived.
    pub(crate) arrivals: arrival::Arrivals,
    /// `--delay` was given (its metrics are reported, also while draining).
    pub(crate) delay_configured: bool,
    /// `--fault` was given (likewise).
    pub(crate) faults_configured: bool,
}

impl Resources {
    /// This worker's counters.
    pub(crate) fn counters(&self) -> &WorkerCounters {
        &self.counters[self.id]
    }

    /// The context a connection step needs.
    pub(crate) fn ctx(&mut self, drained: bool) -> (Ctx<'_>, &mut [u8]) {
        let (ctx, scratch, _) = self.ctx_reading(drained);
        (ctx, scratch)
    }

    /// [`ctx`](Self::ctx), and the arrivals a read consults.
    fn ctx_reading(&mut self, drained: bool) -> (Ctx<'_>, &mut [u8], &mut arrival::Arrivals) {
        (
            Ctx {
                templates: &self.templates,
                counters: &self.counters[self.id],
                pools: &mut self.pools,
                max_head: self.max_head,
                drained,
                boundaries: 0,
                health_path: self.health_path.as_deref(),
                ready: self.ready,
                chaos: self.chaos.as_ref(),
                rng: &mut self.rng,
                delay: self.delay.as_ref(),
                now_us: self.now_us,
                arrived_us: self.now_us,
            },
            &mut self.scratch,
            &mut self.arrivals,
        )
    }
}

/// How a [`drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The connection waits for its client (to send, or to read); set its timer
    /// from this progress.
    Waiting(Progress),
    /// It used its turn with input still in the socket: set its timer, and drive
    /// it again after the other ready connections (edge-triggered readiness will
    /// not report that input again).
    Busy(Progress),
    /// The final response is written and FIN sent: the connection lingers now;
    /// `busy` as above.
    StartedLinger { busy: bool },
    /// Still lingering; `busy` as above.
    Lingering { busy: bool },
    /// Close the connection.
    Close,
    /// Reset the connection (an injected fault): `SO_LINGER` 0, then close.
    Reset,
}

/// Moves `conn` forward as far as `sock` allows: write, answer, read, repeat.
///
/// `read_closed` says the client's FIN has arrived (epoll's `EPOLLRDHUP`): a read
/// shorter than the buffer then does not mean the socket is drained, since the EOF
/// behind it would not be reported again.
///
/// `drained` says the socket is known to hold no input: a read found it empty and
/// no readiness event has been handled since. The caller clears it for every event
/// and keeps it between calls; a connection woken by its own timer or delay then
/// writes without a read that would only return `EAGAIN`.
pub(crate) fn drive<S: Socket>(
    sock: &mut S,
    conn: &mut Conn,
    res: &mut Resources,
    read_closed: bool,
    drained: &mut bool,
) -> Outcome {
    let mut progress = Progress::default();
    let mut reads = 0;
    loop {
        let (mut ctx, scratch, arrivals) = res.ctx_reading(*drained);
        if let Some(q) = conn.output_mut() {
            match q.write_ready(sock, ctx.templates, scratch, ctx.now_us) {
                Ok(n) => {
                    if n > 0 {
                        progress.wrote = true;
                        bump(&ctx.counters.bytes_sent, n as u64);
                    }
                    conn.after_write(ctx.pools);
                }
                Err(_) => return Outcome::Close,
            }
        }
        if conn.answer_held(&mut ctx) {
            progress.boundaries += ctx.boundaries;
            continue;
        }
        match conn.next_step() {
            Step::Read if !*drained => {}
            Step::Read | Step::WaitWritable => return Outcome::Waiting(progress),
            // The answer was queued to close without lingering because the socket
            // was empty then; input that has arrived since (a later event cleared
            // `drained`, e.g. during a delay) would turn the close into a reset
            // that can destroy the answer: linger instead.
            Step::Close if !*drained => return linger(sock, conn, scratch, read_closed),
            Step::Close => return Outcome::Close,
            Step::Reset => return Outcome::Reset,
            Step::Stall => return Outcome::Waiting(progress),
            Step::Linger => return linger(sock, conn, scratch, read_closed),
            Step::Discard => return discard_input(sock, scratch, read_closed),
        }
        if reads == READS_PER_TURN {
            return Outcome::Busy(progress);
        }
        reads += 1;
        let buf = conn.read_buf(scratch);
        let requested = buf.len();
        let read = if ctx.delay.is_some() {
            // A delay counts from when the head arrived, which the kernel stamped.
            let read = sock.read_stamped(buf);
            if let Ok((_, stamp)) = read {
                ctx.arrived_us = arrivals.arrived_us(stamp, || sock.reordered());
            }
            read.map(|(n, _)| n)
        } else {
            sock.read(buf)
        };
        match read {
            Ok(0) => {
                *drained = true;
                progress.read = true;
                conn.on_eof(&mut ctx);
            }
            Ok(n) => {
                *drained = n < requested && !read_closed;
                ctx.drained = *drained;
                progress.read = true;
                conn.on_read(n, scratch, &mut ctx);
                progress.boundaries += ctx.boundaries;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *drained = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Close,
        }
    }
}

/// Sends FIN now but keeps reading: closing with unread input would send a reset,
/// and a reset can destroy the response before the client has read it.
fn linger<S: Socket>(
    sock: &mut S,
    conn: &mut Conn,
    scratch: &mut [u8],
    read_closed: bool,
) -> Outcome {
    let _ = sock.shutdown_write();
    conn.start_linger();
    match discard_input(sock, scratch, read_closed) {
        Outcome::Lingering { busy } => Outcome::StartedLinger { busy },
        other => other,
    }
}

/// Lingering: reads and drops input until EOF (then close) or the socket is empty.
pub(crate) fn discard_input<S: Read>(
    sock: &mut S,
    scratch: &mut [u8],
    read_closed: bool,
) -> Outcome {
    for _ in 0..READS_PER_TURN {
        match sock.read(scratch) {
            Ok(0) => return Outcome::Close,
            Ok(n) if n < scratch.len() && !read_closed => {
                return Outcome::Lingering { busy: false }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Outcome::Lingering { busy: false }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Close,
        }
    }
    Outcome::Lingering { busy: true }
}
