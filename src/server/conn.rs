//! One connection's state and the parse → respond step for the bytes it received.
//!
//! [`process`] is the whole request path: it walks the received bytes, parses each
//! request head, skips request content, and appends the precomputed response for
//! every complete request to the worker's output buffer, in order. It does no I/O,
//! so pipelined batches cost one read and one write however many requests they hold.

use crate::http::response::Persistence;
use crate::http::{parse_head, Body, ChunkedDecoder, RequestHead, Status, Templates, Version};
use crate::metrics::{bump, WorkerCounters};
use mio::net::TcpStream;

/// The response owed for a request whose content is still being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    is_head: bool,
    keep_alive: bool,
    version: Version,
}

/// Where a connection is in its request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Skipping `remaining` bytes of `Content-Length` content.
    LengthBody { remaining: u64, owed: Option<Owed> },
    /// Skipping chunked content.
    ChunkedBody {
        decoder: ChunkedDecoder,
        owed: Option<Owed>,
    },
    /// The last response is queued; close once it is sent. Input is discarded.
    Closing,
    /// The final response is sent and our side is shut down; discarding input
    /// until the client closes, so that unread data does not turn into a reset
    /// that could destroy the response in flight.
    Linger,
}

/// A client connection owned by one worker.
pub struct Conn {
    pub stream: TcpStream,
    pub phase: Phase,
    /// A partial request head (a fixed-size pooled buffer) and how much of it is used.
    pub input: Option<Vec<u8>>,
    pub input_len: usize,
    /// Output the kernel has not accepted yet (a pooled buffer) and how much of it is sent.
    pub output: Option<Vec<u8>>,
    pub output_sent: usize,
    /// The stream is in the worker's epoll set (it is not until the first read
    /// after accept has been tried).
    pub registered: bool,
    /// Write interest is wanted (and registered, once `registered`).
    pub write_interest: bool,
    /// Closing must linger: input may still arrive after the final response.
    pub linger_needed: bool,
    /// Bytes discarded while lingering.
    pub lingered: usize,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            phase: Phase::Head,
            input: None,
            input_len: 0,
            output: None,
            output_sent: 0,
            registered: false,
            write_interest: false,
            linger_needed: false,
            lingered: 0,
        }
    }

    /// Bytes of output waiting for the socket.
    pub fn pending_output(&self) -> usize {
        self.output
            .as_ref()
            .map_or(0, |o| o.len() - self.output_sent)
    }

    /// Nothing in flight: no partial head, no content, no output.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Head && self.input_len == 0 && self.pending_output() == 0
    }
}

/// What `process` needs from the worker.
pub struct Ctx<'a> {
    pub templates: &'a Templates,
    pub out: &'a mut Vec<u8>,
    pub counters: &'a WorkerCounters,
    pub max_head: usize,
    /// The server is shutting down: every response closes its connection.
    pub draining: bool,
    /// Set when the connection is to close with input possibly left unread: after an
    /// error, or when bytes follow the request that closes it.
    pub unclean_close: bool,
}

impl Ctx<'_> {
    fn respond(&mut self, owed: Owed) -> bool {
        let keep = owed.keep_alive && !self.draining;
        let persistence = match (keep, owed.version) {
            (false, _) => Persistence::Close,
            (true, Version::Http10) => Persistence::KeepAlive,
            (true, Version::Http11) => Persistence::Default,
        };
        self.out
            .extend_from_slice(self.templates.configured(owed.is_head, persistence));
        count_status(self.counters, self.templates.status());
        keep
    }

    fn error(&mut self, status: u16) {
        self.unclean_close = true;
        bump(&self.counters.parse_errors, 1);
        self.out.extend_from_slice(self.templates.error(status));
        count_status(self.counters, status);
    }
}

fn count_status(c: &WorkerCounters, status: u16) {
    let slot = match status / 100 {
        2 => &c.responses_2xx,
        3 => &c.responses_3xx,
        4 => &c.responses_4xx,
        _ => &c.responses_5xx,
    };
    bump(slot, 1);
}

fn owed(head: &RequestHead) -> Owed {
    Owed {
        is_head: head.is_head,
        keep_alive: head.keep_alive,
        version: head.version,
    }
}

/// Consumes `data` (bytes received, possibly several pipelined requests), appends
/// the responses to `ctx.out` and returns how many bytes were used. Unused bytes are
/// an incomplete request head the caller must keep and present again with more.
pub fn process(phase: &mut Phase, data: &[u8], ctx: &mut Ctx<'_>) -> usize {
    let mut pos = 0;
    loop {
        match phase {
            Phase::Head => {
                if pos == data.len() {
                    return pos;
                }
                let head = match parse_head(&data[pos..], ctx.max_head) {
                    Ok(Status::Complete(head)) => head,
                    Ok(Status::Partial) => return pos,
                    Err(e) => {
                        ctx.error(e.status());
                        *phase = Phase::Closing;
                        return data.len();
                    }
                };
                pos += head.len;
                bump(&ctx.counters.requests, 1);
                if head.is_connect {
                    // A 2xx to CONNECT would turn the connection into a tunnel.
                    ctx.error(501);
                    *phase = Phase::Closing;
                    return data.len();
                }
                let owed = owed(&head);
                // The response goes out once the content is skipped, so that a framing
                // error in the content can still be answered with 400, except when the
                // client waits for permission to send it (Expect: 100-continue).
                let early = head.expect_continue && head.body != Body::None;
                let (keep, owed) = if early || head.body == Body::None {
                    (ctx.respond(owed), None)
                } else {
                    (true, Some(owed))
                };
                *phase = match head.body {
                    _ if !keep => Phase::Closing,
                    Body::None => Phase::Head,
                    Body::Length(remaining) => Phase::LengthBody { remaining, owed },
                    Body::Chunked => Phase::ChunkedBody {
                        decoder: ChunkedDecoder::new(ctx.max_head),
                        owed,
                    },
                };
                if *phase == Phase::Closing {
                    ctx.unclean_close |= pos < data.len() || head.body != Body::None;
                    return data.len();
                }
            }
            Phase::LengthBody { remaining, owed } => {
                let take =
                    (data.len() - pos).min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                pos += take;
                *remaining -= take as u64;
                if *remaining > 0 {
                    return pos;
                }
                let owed = *owed;
                if finish_body(phase, owed, ctx, pos < data.len()) {
                    return data.len();
                }
            }
            Phase::ChunkedBody { decoder, owed } => match decoder.feed(&data[pos..]) {
                Ok(n) => {
                    pos += n;
                    if !decoder.is_done() {
                        return pos;
                    }
                    let owed = *owed;
                    if finish_body(phase, owed, ctx, pos < data.len()) {
                        return data.len();
                    }
                }
                Err(_) => {
                    if owed.is_some() {
                        ctx.error(400);
                    } else {
                        bump(&ctx.counters.parse_errors, 1);
                    }
                    *phase = Phase::Closing;
                    return data.len();
                }
            },
            Phase::Closing | Phase::Linger => return data.len(),
        }
    }
}

/// The content of a request is skipped: answer it if not done yet, then go on.
/// Returns whether the connection is now closing; `more_input` says whether bytes
/// follow, which are then left unread.
fn finish_body(phase: &mut Phase, owed: Option<Owed>, ctx: &mut Ctx<'_>, more_input: bool) -> bool {
    let keep = match owed {
        Some(o) => ctx.respond(o),
        None => !ctx.draining,
    };
    *phase = if keep { Phase::Head } else { Phase::Closing };
    ctx.unclean_close |= !keep && more_input;
    !keep
}

/// Test support: feeds `data` to [`process`] in the pieces that end at `cuts`,
/// keeping unused bytes as the worker does, and returns the responses, the final
/// phase, the bytes still held and the counters. Used by the property test and the
/// fuzz target to compare a split stream with the same stream read whole.
#[doc(hidden)]
pub fn replay(
    data: &[u8],
    cuts: &[usize],
    max_head: usize,
) -> (Vec<u8>, Phase, Vec<u8>, crate::metrics::Snapshot) {
    let templates = Templates::new(&crate::http::ResponseSpec::default(), 0);
    let counters = [WorkerCounters::default()];
    let mut out = Vec::new();
    let mut phase = Phase::Head;
    let mut pending: Vec<u8> = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        pending.extend_from_slice(&data[start..end]);
        start = end;
        let mut ctx = Ctx {
            templates: &templates,
            out: &mut out,
            counters: &counters[0],
            max_head,
            draining: false,
            unclean_close: false,
        };
        let used = process(&mut phase, &pending, &mut ctx);
        pending.drain(..used);
        assert!(
            pending.len() <= max_head,
            "kept {} bytes, more than the head limit",
            pending.len()
        );
    }
    (
        out,
        phase,
        pending,
        crate::metrics::Snapshot::sum(&counters),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Run {
        out: Vec<u8>,
        phase: Phase,
        used: usize,
    }

    fn run(data: &[u8]) -> Run {
        let (out, phase, pending, _) = replay(data, &[], 8192);
        Run {
            out,
            phase,
            used: data.len() - pending.len(),
        }
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
        assert_eq!(r.used, 55);
        assert_eq!(r.phase, Phase::Head);
    }

    #[test]
    fn bodies_are_skipped_not_parsed() {
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 27\r\n\r\nGET /evil HTTP/1.1\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["200", "200"]);
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["200", "200"]);
    }

    #[test]
    fn bad_chunk_gets_400_and_close() {
        let r = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!(statuses(&r.out), ["400"]);
        assert_eq!(r.phase, Phase::Closing);
    }

    #[test]
    fn connection_close_stops_processing() {
        let r = run(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(&r.out), ["200"]);
        assert!(String::from_utf8_lossy(&r.out).contains("Connection: close\r\n"));
        assert_eq!(r.phase, Phase::Closing);
    }
}
