//! One connection's whole life as a state machine, without I/O.
//!
//! The worker owns the socket and does the system calls; a [`Conn`] decides. It is
//! told what was read ([`Conn::on_read`], [`Conn::on_eof`]), what was written
//! ([`Conn::output_mut`] then [`Conn::after_write`]), which timer fired
//! ([`Conn::on_timeout`]) and that the server is draining ([`Conn::begin_drain`]),
//! and answers with what the worker must do next ([`Conn::next_step`]). Nothing
//! here can close a socket: the worker closes in exactly one place, and
//! [`Conn::release`] gives back every buffer the connection holds.
//!
//! [`Conn::process`] is the whole request path: it walks the received bytes, parses
//! each request head, skips request content, and queues a reference to the
//! precomputed response of every complete request, in order. It stops answering
//! when the queued output reaches its cap ([`OutQueue::has_room`]), keeps the
//! unanswered bytes and resumes when the client has read: what one read can make
//! the server hold is bounded by constants, whatever the body size.

use super::chaos::{Chaos, Draw, Fault};
use super::deadline::Waiting;
use super::delay::DelaySpec;
use super::output::OutQueue;
use super::pool::Pool;
use crate::http::response::Persistence;
use crate::http::{
    request_path, Body, ChunkedDecoder, Family, HeadParser, RequestHead, RespId, Status, Templates,
    Version,
};
use crate::metrics::{bump, WorkerCounters};

/// The response owed for a request whose content is still being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owed {
    is_head: bool,
    keep_alive: bool,
    version: Version,
    family: Family,
    /// When the answer may be sent (`--delay`, from the end of the head), µs; 0: at once.
    ready_at: u64,
}

impl Owed {
    fn of(head: &RequestHead, family: Family, ready_at: u64) -> Owed {
        Owed {
            is_head: head.is_head,
            keep_alive: head.keep_alive,
            version: head.version,
            family,
            ready_at,
        }
    }
}

/// How the content being skipped is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// This many bytes of `Content-Length` content are still to come.
    Length(u64),
    /// Chunked content, and where the decoder is in it.
    Chunked(ChunkedDecoder),
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for a request head: between requests, or with part of one in the
    /// input buffer.
    Head,
    /// Skipping a request's content; its response is owed.
    Body { skip: Skip, owed: Owed },
    /// The final response is queued. Once it is written, close; first `linger`
    /// (FIN, then discard input) when input may still arrive, because closing a
    /// socket with unread input sends a reset that can destroy responses in flight.
    Closing { linger: bool },
    /// FIN is sent; input is discarded until the client closes or the linger
    /// deadline passes.
    Lingering,
    /// An injected reset (`--fault reset`): once what is owed is written, reset.
    Resetting,
    /// An injected stall (`--fault stall`): once what is owed is written, answer
    /// nothing more and read nothing; closed by the idle deadline.
    Stalled,
}

/// What the worker does next with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read more input, when the socket has any.
    Read,
    /// Wait until the socket can take more output (or a timer fires).
    WaitWritable,
    /// Everything is written: send FIN, then linger.
    Linger,
    /// Discard input until EOF (lingering).
    Discard,
    /// Close now.
    Close,
    /// Reset the connection now (`SO_LINGER` 0, then close).
    Reset,
    /// Do nothing until the deadline closes the connection.
    Stall,
}

/// Why [`Conn::process`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Everything usable is used; the rest (if any) is the start of a request head.
    NeedInput,
    /// Complete requests remain, but the output queue is full.
    OutputFull,
    /// The connection is closing; the rest of the input is discarded.
    Closed,
}

/// Input the connection could not finish with: the start of a request head, or
/// requests waiting for room in the output queue. A fixed-size pooled buffer.
pub(crate) struct Input {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Parse state of the head that starts at `start`.
    parser: HeadParser,
    /// `buf[start..end]` holds complete requests not answered yet for lack of room
    /// (nothing more is read until they are answered).
    unanswered: bool,
}

impl Input {
    fn boxed(size: usize) -> Box<Input> {
        Box::new(Input {
            buf: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
            parser: HeadParser::new(),
            unanswered: false,
        })
    }

    fn held(&self) -> usize {
        self.end - self.start
    }

    /// Held bytes that begin a request: all of them, except a lone CR whose LF has
    /// not arrived (the end of an empty line split over two reads, which begins
    /// nothing: no header deadline for it, and nothing in flight for the drain).
    fn begun(&self) -> usize {
        let held = self.held();
        let lone_cr = held == 1 && self.buf[self.start] == b'\r' && self.parser.is_fresh();
        if lone_cr && !self.unanswered {
            0
        } else {
            held
        }
    }
}

/// The buffers a worker shares among its connections.
pub(crate) struct Pools {
    /// Input buffers for a partial head: the head limit plus one byte.
    small: Pool<Input>,
    small_size: usize,
    /// Input buffers for what is left of a whole read.
    big: Pool<Input>,
    big_size: usize,
    queues: Pool<OutQueue>,
}

/// Free buffers a worker keeps per pool.
const POOL_FREE: usize = 64;

impl Pools {
    /// Pools for a head limit of `max_head` bytes and reads of `read_size` bytes.
    pub(crate) fn new(max_head: usize, read_size: usize) -> Pools {
        Pools {
            small: Pool::new(POOL_FREE),
            small_size: max_head + 1,
            big: Pool::new(POOL_FREE),
            big_size: read_size.max(max_head + 1),
            queues: Pool::new(POOL_FREE),
        }
    }

    /// Free buffers kept: (small inputs, big inputs, output queues).
    pub(crate) fn free_counts(&self) -> (usize, usize, usize) {
        (
            self.small.free_count(),
            self.big.free_count(),
            self.queues.free_count(),
        )
    }

    fn take_input(&mut self, len: usize) -> Box<Input> {
        let (pool, size) = if len <= self.small_size {
            (&mut self.small, self.small_size)
        } else {
            (&mut self.big, self.big_size)
        };
        let mut input = pool.take_or(|| Input::boxed(size));
        input.start = 0;
        input.end = 0;
        input.parser = HeadParser::new();
        input.unanswered = false;
        input
    }

    fn give_input(&mut self, input: Box<Input>) {
        if input.buf.len() == self.small_size {
            self.small.give(input);
        } else {
            self.big.give(input);
        }
    }

    fn take_queue(&mut self) -> Box<OutQueue> {
        let mut q = self.queues.take_or(OutQueue::boxed);
        q.clear();
        q
    }
}

/// What [`Conn`] needs from its worker for one step.
pub(crate) struct Ctx<'a> {
    pub(crate) templates: &'a Templates,
    pub(crate) counters: &'a WorkerCounters,
    pub(crate) pools: &'a mut Pools,
    pub(crate) max_head: usize,
    /// The read that delivered the bytes being processed left the socket empty.
    pub(crate) drained: bool,
    /// Requests begun or finished in this step (heads and bodies completed): what
    /// restarts the header and body deadlines.
    pub(crate) boundaries: u32,
    /// `--health-path`, when configured.
    pub(crate) health_path: Option<&'a [u8]>,
    /// Whether the server is ready (not shutting down): what the health path answers.
    pub(crate) ready: bool,
    /// `--status-mix` and `--fault`, when configured, and the worker's generator.
    pub(crate) chaos: Option<&'a Chaos>,
    pub(crate) rng: &'a mut crate::rng::Rng,
    /// `--delay`, when configured (and not draining).
    pub(crate) delay: Option<&'a DelaySpec>,
    /// The worker's clock, µs.
    pub(crate) now_us: u64,
    /// When the bytes being processed had arrived, on the same clock (`now_us`
    /// when unknown): a head they complete counts its `--delay` from here.
    pub(crate) arrived_us: u64,
}

impl Ctx<'_> {
    /// What the request whose complete head is `head` gets. The health path is
    /// never mixed or faulted: probes tell the truth while the target misbehaves.
    #[inline]
    fn draw(&mut self, head: &[u8]) -> Draw {
        if let Some(path) = self.health_path {
            if request_path(head) == path {
                return Draw::Answer(if self.ready {
                    Family::HEALTH_OK
                } else {
                    Family::HEALTH_DOWN
                });
            }
        }
        match self.chaos {
            None => Draw::Answer(Family::CONFIGURED),
            Some(c) => c.draw(self.rng),
        }
    }
}

/// How many bytes at the start of `data` are empty lines (CRLF or LF), which RFC
/// 9112 §2.2 lets a client send before a request line and a server ignore. They
/// are used up rather than held as the start of a head: they begin no request, so
/// they set no header deadline, count toward no head limit and are no request in
/// flight for the drain. A final CR whose LF has not arrived is not counted (the
/// caller holds it until the next byte comes), and a CR without LF is left to the
/// parser, which refuses it.
#[inline]
fn empty_lines(data: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match data.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

/// `drain_left` of a connection while the server is not draining.
const NOT_DRAINING: u64 = u64::MAX;

/// One client connection's state (the socket is the worker's).
pub(crate) struct Conn {
    state: State,
    input: Option<Box<Input>>,
    output: Option<Box<OutQueue>>,
    /// While the server drains: bytes received before the drain began that are
    /// still to be answered. The request that uses the last of them gets the
    /// final response, with `Connection: close`. [`NOT_DRAINING`] otherwise (a
    /// sentinel rather than an `Option`, to keep every connection 8 bytes smaller).
    drain_left: u64,
}

fn persistence(keep: bool, version: Version) -> Persistence {
    match (keep, version) {
        (false, _) => Persistence::Close,
        (true, Version::Http10) => Persistence::KeepAlive,
        (true, Version::Http11) => Persistence::Default,
    }
}

fn count_status(c: &WorkerCounters, status: u16) {
    let slot = match status / 100 {
        1 => return,
        2 => &c.responses_2xx,
        3 => &c.responses_3xx,
        4 => &c.responses_4xx,
        _ => &c.responses_5xx,
    };
    bump(slot, 1);
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Conn {
    /// A new connection, waiting for its first request.
    pub(crate) fn new() -> Conn {
        Conn {
            state: State::Head,
            input: None,
            output: None,
            drain_left: NOT_DRAINING,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Bytes of output not yet written.
    pub(crate) fn pending_output(&self) -> usize {
        self.output.as_ref().map_or(0, |q| q.pending())
    }

    /// Responses queued and not completely written.
    pub(crate) fn queued(&self) -> usize {
        self.output.as_ref().map_or(0, |q| q.len())
    }

    /// Bytes of input held (not yet answered or not yet a complete head).
    pub(crate) fn held_input(&self) -> usize {
        self.input.as_ref().map_or(0, |i| i.held())
    }

    /// The output queue, to write from; `None` when nothing is owed.
    pub(crate) fn output_mut(&mut self) -> Option<&mut OutQueue> {
        self.output.as_deref_mut()
    }

    /// Call after writing from [`output_mut`](Self::output_mut): gives an emptied
    /// queue back to the pool.
    pub(crate) fn after_write(&mut self, pools: &mut Pools) {
        if self.output.as_ref().is_some_and(|q| q.is_empty()) {
            if let Some(q) = self.output.take() {
                pools.queues.give(q);
            }
        }
    }

    fn has_room(&self) -> bool {
        self.output.as_ref().is_none_or(|q| q.has_room())
    }

    /// What the worker should do next, given the state and the output still owed.
    pub(crate) fn next_step(&self) -> Step {
        let owing = self.output.is_some();
        match self.state {
            State::Lingering => Step::Discard,
            State::Resetting | State::Stalled if owing => Step::WaitWritable,
            State::Resetting => Step::Reset,
            State::Stalled => Step::Stall,
            State::Closing { .. } if owing => Step::WaitWritable,
            State::Closing { linger: true } => Step::Linger,
            State::Closing { linger: false } => Step::Close,
            State::Head | State::Body { .. } => {
                // Held requests are answered (`answer_held`) before anything more is read.
                let blocked = self.input.as_ref().is_some_and(|i| i.unanswered);
                if self.has_room() && !blocked {
                    Step::Read
                } else {
                    Step::WaitWritable
                }
            }
        }
    }

    /// When the connection's next response may be written, if it is waiting for
    /// its delay at `now_us`.
    pub(crate) fn delayed_until(&self, now_us: u64) -> Option<u64> {
        self.output.as_ref().and_then(|q| q.delayed_until(now_us))
    }

    /// What the connection waits for at `now_us`, which decides its timer.
    pub(crate) fn waiting(&self, now_us: u64) -> Waiting {
        let delayed = self
            .output
            .as_ref()
            .is_some_and(|q| q.delayed_until(now_us).is_some());
        match self.state {
            State::Lingering => Waiting::Linger,
            // Waiting for a delay: the input side's deadlines still apply, else none
            // (the worker wakes the connection when the delay is over).
            // (Complete requests held for room in the queue are the server's own
            // backpressure, not a slow client.)
            State::Head
                if delayed
                    && self
                        .input
                        .as_ref()
                        .is_some_and(|i| i.begun() > 0 && !i.unanswered) =>
            {
                Waiting::PartialHead
            }
            State::Body {
                skip: Skip::Chunked(d),
                ..
            } if delayed && d.in_trailer() => Waiting::Trailer,
            State::Body { .. } if delayed => Waiting::Body,
            _ if delayed => Waiting::Delay,
            _ if self.output.is_some() => Waiting::Output,
            State::Stalled => Waiting::Stall,
            State::Resetting => Waiting::Output,
            State::Closing { .. } => Waiting::Output,
            State::Head if self.input.as_ref().is_some_and(|i| i.begun() > 0) => {
                Waiting::PartialHead
            }
            State::Head => Waiting::Request,
            State::Body {
                skip: Skip::Chunked(d),
                ..
            } if d.in_trailer() => Waiting::Trailer,
            State::Body { .. } => Waiting::Body,
        }
    }

    /// Where the next read should go: the spare room of the held input, or the
    /// worker's scratch buffer when nothing is held.
    pub(crate) fn read_buf<'b>(&'b mut self, scratch: &'b mut [u8]) -> &'b mut [u8] {
        match self.input.as_deref_mut() {
            Some(input) => &mut input.buf[input.end..],
            None => scratch,
        }
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf) (`scratch` is the
    /// worker's scratch buffer, where they are when nothing was held).
    pub(crate) fn on_read(&mut self, n: usize, scratch: &[u8], ctx: &mut Ctx<'_>) {
        match self.input.take() {
            Some(mut input) => {
                input.end += n;
                self.run_held(input, ctx);
            }
            None => {
                let data = &scratch[..n];
                let mut parser = HeadParser::new();
                let (used, stop) = self.process(data, &mut parser, ctx);
                if used < n && stop != Stop::Closed {
                    let rest = &data[used..];
                    let mut input = ctx.pools.take_input(rest.len());
                    input.buf[..rest.len()].copy_from_slice(rest);
                    input.end = rest.len();
                    input.parser = parser;
                    input.unanswered = stop == Stop::OutputFull;
                    self.input = Some(input);
                }
            }
        }
    }

    /// Answers held requests that were waiting for room in the output queue.
    /// Returns whether it did anything.
    pub(crate) fn answer_held(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let ready = self.input.as_ref().is_some_and(|i| i.unanswered);
        if !ready || !self.has_room() {
            return false;
        }
        if let Some(input) = self.input.take() {
            self.run_held(input, ctx);
        }
        true
    }

    /// The client closed its sending side: close once what is owed is written. EOF is
    /// only read when no answered-later requests are held (see [`next_step`](Self::next_step)),
    /// so what input is held is an incomplete request, never answered.
    pub(crate) fn on_eof(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(input) = self.input.take() {
            ctx.pools.give_input(input);
        }
        if !matches!(
            self.state,
            State::Closing { .. } | State::Lingering | State::Resetting | State::Stalled
        ) {
            self.state = State::Closing { linger: false };
        }
    }

    /// Processes the held input and keeps what is still needed.
    fn run_held(&mut self, mut input: Box<Input>, ctx: &mut Ctx<'_>) {
        let (start, end) = (input.start, input.end);
        let (used, stop) = self.process(&input.buf[start..end], &mut input.parser, ctx);
        input.start += used;
        input.unanswered = stop == Stop::OutputFull;
        if stop == Stop::Closed || input.held() == 0 {
            ctx.pools.give_input(input);
            return;
        }
        if stop == Stop::NeedInput && input.start > 0 {
            // Keep the start of the head at the start of the buffer, so that the
            // rest of it fits (the parser's positions are relative to it).
            input.buf.copy_within(input.start..input.end, 0);
            input.end -= input.start;
            input.start = 0;
        }
        self.input = Some(input);
    }

    fn queue(&mut self, id: RespId, ctx: &mut Ctx<'_>) {
        self.queue_at(id, 0, ctx);
    }

    fn queue_at(&mut self, id: RespId, ready_at: u64, ctx: &mut Ctx<'_>) {
        let pools = &mut *ctx.pools;
        let q = self.output.get_or_insert_with(|| pools.take_queue());
        q.push_at(id, ctx.templates, ready_at);
        count_status(ctx.counters, ctx.templates.status_of(id));
    }

    /// Replaces a request's answer with `fault`: what is owed before it is still
    /// written, nothing after it is answered.
    fn inject(&mut self, fault: Fault, ctx: &mut Ctx<'_>) {
        let c = ctx.counters;
        let (counter, state) = match fault {
            Fault::Reset => (&c.faults_reset, State::Resetting),
            Fault::Close => (&c.faults_close, State::Closing { linger: true }),
            Fault::Stall => (&c.faults_stall, State::Stalled),
        };
        bump(counter, 1);
        self.state = state;
    }

    /// Answers a request the server refuses, and closes.
    fn refuse(&mut self, status: u16, is_head: bool, ctx: &mut Ctx<'_>) {
        self.queue(RespId::error(status, is_head), ctx);
        self.state = State::Closing { linger: true };
    }

    /// Queues the configured answer to a request whose bytes end at `pos` of a
    /// `len`-byte input; returns whether the connection stays open.
    fn answer(&mut self, owed: Owed, pos: usize, len: usize, ctx: &mut Ctx<'_>) -> bool {
        let last = self.drain_left != NOT_DRAINING && pos as u64 >= self.drain_left;
        let keep = owed.keep_alive && !last;
        self.queue_at(
            RespId::answer(owed.family, owed.is_head, persistence(keep, owed.version)),
            owed.ready_at,
            ctx,
        );
        if let Some(i) = owed.family.mix_index() {
            if let Some(c) = ctx.counters.mixed.get(i) {
                bump(c, 1);
            }
        }
        ctx.boundaries += 1;
        self.state = if keep {
            State::Head
        } else {
            State::Closing {
                // A close the server decides on while draining always lingers: the
                // client may have pipelined more before it reads the close.
                linger: pos < len || !ctx.drained || last,
            }
        };
        keep
    }

    /// Consumes `data` (received bytes, possibly several pipelined requests) from
    /// its start, where `parser` is positioned, queues the responses and returns
    /// how many bytes were used and why it stopped.
    fn process(
        &mut self,
        data: &[u8],
        parser: &mut HeadParser,
        ctx: &mut Ctx<'_>,
    ) -> (usize, Stop) {
        let (used, stop) = self.process_inner(data, parser, ctx);
        if self.drain_left != NOT_DRAINING {
            self.drain_left = self.drain_left.saturating_sub(used as u64);
            if self.drain_left == 0 && self.state == State::Head && used == data.len() {
                // What was received before the drain is used up, and it ended
                // between requests (in empty lines): nothing more will be answered.
                let linger = self.output.is_some() || !ctx.drained;
                self.end_after_drain(ctx.templates, linger);
            }
        }
        (used, stop)
    }

    /// Draining, with every request received before the drain answered: the last
    /// queued response gets `Connection: close` (unless it is partly written: then
    /// it goes out as it began, and FIN follows it), and the connection closes.
    fn end_after_drain(&mut self, templates: &Templates, linger: bool) {
        if let Some(q) = self.output.as_deref_mut() {
            q.close_last(templates);
        }
        self.state = State::Closing { linger };
    }

    fn process_inner(
        &mut self,
        data: &[u8],
        parser: &mut HeadParser,
        ctx: &mut Ctx<'_>,
    ) -> (usize, Stop) {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Head => {
                    if parser.is_fresh() {
                        pos += empty_lines(&data[pos..]);
                        if &data[pos..] == b"\r" {
                            // Its LF decides: held, and looked at again with it.
                            return (pos, Stop::NeedInput);
                        }
                    }
                    if pos == data.len() {
                        return (pos, Stop::NeedInput);
                    }
                    if !self.has_room() {
                        return (pos, Stop::OutputFull);
                    }
                    let head = match parser.parse(&data[pos..], ctx.max_head) {
                        Ok(Status::Complete(head)) => head,
                        Ok(Status::Partial) => return (pos, Stop::NeedInput),
                        Err(e) => {
                            bump(&ctx.counters.parse_errors, 1);
                            let is_head = parser.is_head();
                            self.refuse(e.status(), is_head, ctx);
                            return (data.len(), Stop::Closed);
                        }
                    };
                    *parser = HeadParser::new();
                    let head_bytes = &data[pos..pos + head.len];
                    pos += head.len;
                    bump(&ctx.counters.requests, 1);
                    ctx.boundaries += 1;
                    if head.is_connect {
                        // A 2xx to CONNECT would turn the connection into a tunnel.
                        bump(&ctx.counters.parse_errors, 1);
                        self.refuse(501, head.is_head, ctx);
                        return (data.len(), Stop::Closed);
                    }
                    let family = match ctx.draw(head_bytes) {
                        Draw::Answer(family) => family,
                        Draw::Fault(fault) => {
                            self.inject(fault, ctx);
                            return (data.len(), Stop::Closed);
                        }
                    };
                    // The health path is never delayed: probes tell the truth.
                    let ready_at = match ctx.delay {
                        Some(d) if !family.is_health() => {
                            let us = d.sample(ctx.rng);
                            bump(&ctx.counters.delayed, 1);
                            bump(&ctx.counters.delay_us, us);
                            ctx.arrived_us + us
                        }
                        _ => 0,
                    };
                    let owed = Owed::of(&head, family, ready_at);
                    let skip = match head.body {
                        Body::None => {
                            if !self.answer(owed, pos, data.len(), ctx) {
                                return (data.len(), Stop::Closed);
                            }
                            continue;
                        }
                        Body::Length(n) => Skip::Length(n),
                        Body::Chunked => Skip::Chunked(ChunkedDecoder::new(ctx.max_head)),
                    };
                    if head.expect_continue && head.version == Version::Http11 {
                        // RFC 9110 §10.1.1: the client waits for this before sending
                        // the content (HTTP/1.0 clients cannot ask for it).
                        self.queue(RespId::CONTINUE, ctx);
                    }
                    self.state = State::Body { skip, owed };
                }
                State::Body { skip, owed } => {
                    let owed = *owed;
                    let done = match skip {
                        Skip::Length(remaining) => {
                            let take = (data.len() - pos)
                                .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                            pos += take;
                            *remaining -= take as u64;
                            *remaining == 0
                        }
                        Skip::Chunked(decoder) => match decoder.feed(&data[pos..]) {
                            Ok(n) => {
                                pos += n;
                                decoder.is_done()
                            }
                            Err(_) => {
                                bump(&ctx.counters.parse_errors, 1);
                                self.refuse(400, owed.is_head, ctx);
                                return (data.len(), Stop::Closed);
                            }
                        },
                    };
                    if !done {
                        return (pos, Stop::NeedInput);
                    }
                    if !self.answer(owed, pos, data.len(), ctx) {
                        return (data.len(), Stop::Closed);
                    }
                }
                State::Closing { .. } | State::Lingering | State::Resetting | State::Stalled => {
                    return (data.len(), Stop::Closed)
                }
            }
        }
    }

    /// The timer for what the connection was [`waiting`](Self::waiting) for fired.
    /// Returns `true` when the connection must close now, `false` when an answer
    /// (408) was queued and the worker should write it.
    pub(crate) fn on_timeout(&mut self, waited: Waiting, ctx: &mut Ctx<'_>) -> bool {
        let is_head = match (waited, self.state) {
            (Waiting::PartialHead, State::Head) => {
                self.input.as_ref().is_some_and(|i| i.parser.is_head())
            }
            (Waiting::Body | Waiting::Trailer, State::Body { owed, .. }) => owed.is_head,
            _ => return true,
        };
        // Too slow: a head, a body or a trailer section not received in time.
        if let Some(input) = self.input.take() {
            ctx.pools.give_input(input);
        }
        self.refuse(408, is_head, ctx);
        false
    }

    /// The server starts draining; `unread` bytes wait in the socket's receive
    /// queue. Everything received so far is still answered, the last response
    /// with `Connection: close`. Returns `true` when the connection can close now.
    pub(crate) fn begin_drain(&mut self, unread: u64, ctx: &mut Ctx<'_>) -> bool {
        if self.drain_left != NOT_DRAINING {
            return false;
        }
        if self.state == State::Stalled {
            // Draining: deliver what is owed (at once) and close, not at the idle timeout.
            if let Some(q) = self.output.as_deref_mut() {
                q.release_delays();
            }
            self.state = State::Closing { linger: true };
            return false;
        }
        if let Some(q) = self.output.as_deref_mut() {
            // Draining: delayed answers go out now, within the shutdown timeout.
            q.release_delays();
        }
        let budget = self.input.as_ref().map_or(0, |i| i.begun()) as u64 + unread;
        // A budget of u64::MAX bytes cannot be received before the drain ends.
        self.drain_left = budget.min(NOT_DRAINING - 1);
        if self.state != State::Head || budget > 0 {
            return false;
        }
        if self.output.is_none() {
            return true;
        }
        // Linger: the client may have pipelined more before it reads the close.
        self.end_after_drain(ctx.templates, true);
        false
    }

    /// FIN has been sent: discard input from now on.
    pub(crate) fn start_linger(&mut self) {
        self.state = State::Lingering;
    }

    /// Gives back every buffer the connection holds, including output not sent.
    pub(crate) fn release(self, pools: &mut Pools) {
        if let Some(input) = self.input {
            pools.give_input(input);
        }
        if let Some(q) = self.output {
            pools.queues.give(q);
        }
    }
}

/// Test support: feeds `data` to a connection in the pieces that end at `cuts`, as
/// reads of that size, writing all output after each read, and returns the bytes
/// written, the final state, the bytes still held and the counters. Used by the
/// property test and the fuzz target to compare a split stream with the same
/// stream read whole.
pub(crate) fn replay(
    data: &[u8],
    cuts: &[usize],
    max_head: usize,
    health_path: Option<&[u8]>,
) -> (Vec<u8>, State, usize, crate::metrics::Snapshot) {
    let templates = Templates::new(&crate::http::ResponseSpec::default(), 0);
    let counters = [WorkerCounters::default()];
    let mut pools = Pools::new(max_head, 32 * 1024);
    let mut conn = Conn::new();
    let mut out = Vec::new();
    let mut scratch = vec![0u8; 32 * 1024];
    let mut rng = crate::rng::Rng::for_worker(0, 0);
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.to_vec();
    ends.push(data.len());
    let mut ctx = Ctx {
        templates: &templates,
        counters: &counters[0],
        pools: &mut pools,
        max_head,
        drained: true,
        boundaries: 0,
        health_path,
        ready: true,
        chaos: None,
        rng: &mut rng,
        delay: None,
        now_us: 0,
        arrived_us: 0,
    };
    let mut i = 0;
    loop {
        while conn.answer_held(&mut ctx) {
            write_all_out(&mut conn, &mut out, &mut ctx);
        }
        if i == ends.len() || conn.next_step() != Step::Read {
            break;
        }
        let end = ends[i].clamp(start, data.len());
        let buf = conn.read_buf(&mut scratch);
        let n = (end - start).min(buf.len());
        if n == 0 {
            i += 1;
            continue;
        }
        buf[..n].copy_from_slice(&data[start..start + n]);
        start += n;
        // As a socket would be: empty after a read only at the end of the stream.
        ctx.drained = start == data.len();
        conn.on_read(n, &scratch, &mut ctx);
        write_all_out(&mut conn, &mut out, &mut ctx);
        if start == end {
            i += 1;
        }
    }
    let held = conn.held_input();
    let state = conn.state();
    conn.release(&mut pools);
    (out, state, held, crate::metrics::Snapshot::sum(&counters))
}

fn write_all_out(conn: &mut Conn, out: &mut Vec<u8>, ctx: &mut Ctx<'_>) {
    if let Some(q) = conn.output_mut() {
        let _ = q.write_to(out, ctx.templates, &mut [0; 4096]);
    }
    conn.after_write(ctx.pools);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Run {
        out: Vec<u8>,
        state: State,
        held: usize,
    }

    fn run(data: &[u8]) -> Run {
        let (out, state, held, _) = replay(data, &[], 8192, None);
        Run { out, state, held }
    }

    fn statuses(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r[..3].to_string())
            .collect()
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let r = run(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /");
        assert_eq!(statuses(&r.out), ["200", "200"]);
        assert_eq!(r.held, 5);
        assert_eq!(r.state, State::Head);
    }

    #[test]
    fn bodies_are_skipped_not_parsed() {
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 27\r\n\r\nGET /evil HTTP/1.1\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["200", "200"]);
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["200", "200"]);
    }

    #[test]
    fn empty_lines_between_requests_are_used_up_not_held() {
        let r = run(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n\n\r\n");
        assert_eq!((statuses(&r.out).len(), r.held), (1, 0));
        // A CR still waiting for its LF is kept, and a CR without LF is refused.
        assert_eq!(run(b"\r\n\r").held, 1);
        assert_eq!(statuses(&run(b"\r\n\rGET / HTTP/1.1\r\n\r\n").out), ["400"]);
        // They count toward no head limit, read whole or a byte at a time.
        let mut data = b"\r\n".repeat(40);
        data.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let bytes: Vec<usize> = (1..data.len()).collect();
        for cuts in [&[][..], &bytes[..]] {
            let (out, state, held, _) = replay(&data, cuts, 64, None);
            assert_eq!(
                (statuses(&out), state, held),
                (vec!["200".into()], State::Head, 0)
            );
        }
    }

    #[test]
    fn bad_chunk_gets_400_and_close() {
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!(statuses(&r.out), ["400"]);
        assert_eq!(r.state, State::Closing { linger: true });
    }

    #[test]
    fn connection_close_stops_processing() {
        let r = run(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["200"]);
        assert!(String::from_utf8_lossy(&r.out).contains("Connection: close\r\n"));
        assert_eq!(r.state, State::Closing { linger: true });
    }

    #[test]
    fn expect_continue_gets_100_then_the_answer_after_the_body() {
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["100", "200", "200"]);
        let r = run(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc");
        assert_eq!(statuses(&r.out), ["200"], "no 100 for HTTP/1.0");
    }

    #[test]
    fn a_long_pipelined_read_is_answered_within_the_cap() {
        let one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let data: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        let (out, state, held, snap) = replay(&data, &[], 8192, None);
        assert_eq!(statuses(&out).len(), 1000);
        assert_eq!((state, held, snap.requests), (State::Head, 0, 1000));
    }

    #[test]
    fn an_idle_connection_is_small_and_holds_no_buffer() {
        // What every open connection costs the worker, whatever the body size:
        // the state, and two empty pointers (no input, no output).
        assert!(
            std::mem::size_of::<Conn>() <= 80,
            "{}",
            std::mem::size_of::<Conn>()
        );
        let (out, state, held, _) = replay(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &[], 8192, None);
        assert!(!out.is_empty());
        assert_eq!((state, held), (State::Head, 0));
    }
}
