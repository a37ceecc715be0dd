//! The admin listener (`--admin-listen`): `/healthz`, `/readyz` and `/metrics` for
//! probes and scrapers, served by the same workers as the serving port.
//!
//! It is kept apart from the serving connections on purpose: its connections do
//! not count against `--max-connections` (a saturated server still answers its
//! liveness probe), its traffic is not counted in the metrics it reports, and what
//! it formats (the Prometheus exposition) is formatted only when scraped. Each
//! connection carries one request: read the head, answer with `Connection: close`,
//! send FIN, discard input until the client closes. Everything an admin client can
//! make the worker hold is bounded: at most [`MAX_CONNS`] connections per worker,
//! [`MAX_HEAD`] bytes of head each, and a short deadline in every state. When all
//! slots are taken, a new connection evicts the oldest one: idle sockets cannot keep
//! a probe out (each connection carries one request, so evicting one loses little).

use super::timer::{TimerKind, Timers, KINDS};
use crate::http::date::{unix_now_coarse, write_imf_fixdate, IMF_FIXDATE_LEN};
use crate::http::response::reason;
use crate::http::{parse_head, request_path, Status};
use crate::metrics::{prometheus, Snapshot, WorkerCounters};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};

/// Admin connections one worker holds at most; more wait in the accept queue.
pub(crate) const MAX_CONNS: usize = 64;
/// Longest admin request head, in bytes (larger gets 431).
const MAX_HEAD: usize = 8 * 1024;
/// Reads of input discarded per event while lingering; a client that sends more
/// than this after its answer is closed.
const LINGER_READS: usize = 16;
/// Retry delay after `accept` failed.
const RETRY_MS: u64 = 50;
/// Longest time an admin client gets for its request head (probes send it at once).
pub(crate) const HEAD_DEADLINE_MS: u64 = 2_000;
/// How long an admin connection lingers after its answer.
pub(crate) const LINGER_MS: u64 = 1_000;
/// At most one warning per this many milliseconds for failed admin accepts.
const WARN_EVERY_MS: u64 = 10_000;

/// Where one admin connection is.
enum State {
    /// Reading the request head (`buf` holds what arrived, at most `MAX_HEAD + 1`).
    Reading { buf: Vec<u8> },
    /// Writing the answer; `sent` bytes are written.
    Writing { out: Vec<u8>, sent: usize },
    /// FIN sent; input is discarded until the client closes.
    Lingering,
}

struct AdminConn {
    stream: TcpStream,
    state: State,
    /// When it was accepted (the oldest is evicted first).
    since: u64,
}

/// What answers depend on.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) counters: &'a [WorkerCounters],
    pub(crate) ready: bool,
    pub(crate) start_time: f64,
    /// The statuses of `--status-mix`.
    pub(crate) mix: &'a [u16],
    /// `--fault` is on.
    pub(crate) faults: bool,
    /// `--delay` is on.
    pub(crate) delay: bool,
}

/// One worker's admin listener and connections.
pub(crate) struct Admin {
    /// `None` once the worker stops accepting (at the end of a drain).
    listener: Option<TcpListener>,
    conns: Vec<Option<AdminConn>>,
    free: Vec<usize>,
    live: usize,
    timers: Timers,
    /// First token of admin connections; connection `i` has token `first + i`.
    first: usize,
    retry_at: Option<u64>,
    last_warning: Option<u64>,
}

/// The durations the admin connections use, in milliseconds.
pub(crate) struct Durations {
    pub(crate) header: u64,
    pub(crate) write: u64,
    pub(crate) linger: u64,
}

impl Admin {
    /// Registers `listener` under `token`; connections get tokens from `first` on.
    pub(crate) fn new(
        listener: std::net::TcpListener,
        registry: &Registry,
        token: Token,
        first: usize,
        d: Durations,
    ) -> io::Result<Admin> {
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, token, Interest::READABLE)?;
        let mut durations = [0; KINDS];
        durations[TimerKind::Header as usize] = d.header;
        durations[TimerKind::Write as usize] = d.write;
        durations[TimerKind::Linger as usize] = d.linger;
        Ok(Admin {
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: Timers::new(durations),
            first,
            retry_at: None,
            last_warning: None,
        })
    }

    /// Admin connections open.
    pub(crate) fn open(&self) -> usize {
        self.live
    }

    /// Closes the listener (queued connections are refused); connections already
    /// accepted finish.
    pub(crate) fn stop_accepting(&mut self) {
        self.listener = None;
        self.retry_at = None;
    }

    /// The earliest time the worker must call [`Admin::on_time`].
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        match (self.timers.next_deadline(), self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts what is queued, up to [`MAX_CONNS`] open.
    pub(crate) fn accept_all(&mut self, registry: &Registry, now: u64, view: View<'_>) {
        self.retry_at = None;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let accepted = listener.accept();
            if accepted.is_ok() && self.live >= MAX_CONNS {
                self.evict_oldest(registry, now, view);
            }
            match accepted {
                Ok((stream, _)) => self.add(stream, registry, now, view),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {}
                Err(e) => {
                    // EMFILE and the like: the queued connections stay; retry on a timer.
                    if self.last_warning.is_none_or(|t| now >= t + WARN_EVERY_MS) {
                        self.last_warning = Some(now);
                        crate::log!(
                            crate::log::Level::Warn,
                            "admin_accept_failed",
                            "error={}",
                            crate::log::quote(&e.to_string())
                        );
                    }
                    self.retry_at = Some(now + RETRY_MS);
                    return;
                }
            }
        }
    }

    /// Makes room for a new connection by closing the one accepted first.
    fn evict_oldest(&mut self, registry: &Registry, now: u64, view: View<'_>) {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.since, i)))
            .min();
        if let Some((_, idx)) = oldest {
            self.close(idx, registry, now, view);
        }
    }

    fn add(&mut self, mut stream: TcpStream, registry: &Registry, now: u64, view: View<'_>) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if registry
            .register(
                &mut stream,
                Token(self.first + idx),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.free.push(idx);
            return;
        }
        self.conns[idx] = Some(AdminConn {
            stream,
            state: State::Reading { buf: Vec::new() },
            since: now,
        });
        self.live += 1;
        self.timers.arm(idx, TimerKind::Header, now);
        self.drive(idx, registry, now, view);
    }

    /// Whether `token` belongs to an admin connection; then its index.
    pub(crate) fn index_of(&self, token: usize) -> Option<usize> {
        token
            .checked_sub(self.first)
            .filter(|&i| i < self.conns.len())
    }

    /// Moves connection `idx` forward as far as its socket allows.
    pub(crate) fn drive(&mut self, idx: usize, registry: &Registry, now: u64, view: View<'_>) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let before = std::mem::discriminant(&conn.state);
        let close = step(conn, view).is_err();
        if close {
            self.close(idx, registry, now, view);
            return;
        }
        if std::mem::discriminant(&conn.state) != before {
            let kind = match conn.state {
                State::Reading { .. } => TimerKind::Header,
                State::Writing { .. } => TimerKind::Write,
                State::Lingering => TimerKind::Linger,
            };
            self.timers.arm(idx, kind, now);
        }
    }

    fn close(&mut self, idx: usize, registry: &Registry, now: u64, view: View<'_>) {
        if let Some(conn) = self.conns.get_mut(idx).and_then(Option::take) {
            self.timers.disarm(idx);
            drop(conn.stream);
            self.free.push(idx);
            self.live -= 1;
            if self.retry_at.is_some() {
                self.accept_all(registry, now, view);
            }
        }
    }

    /// Closes connections whose deadline passed, and retries accepting.
    pub(crate) fn on_time(&mut self, registry: &Registry, now: u64, view: View<'_>) {
        while let Some((idx, _)) = self.timers.pop_expired(now) {
            self.close(idx, registry, now, view);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.accept_all(registry, now, view);
        }
    }
}

/// Runs one connection until its socket would block; `Err` means close it.
fn step(conn: &mut AdminConn, view: View<'_>) -> Result<(), ()> {
    loop {
        match &mut conn.state {
            State::Reading { buf } => {
                let mut chunk = [0u8; 2048];
                let n = match conn.stream.read(&mut chunk) {
                    Ok(0) => return Err(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                };
                let room = (MAX_HEAD + 1).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                let out = match parse_head(buf, MAX_HEAD) {
                    Ok(Status::Partial) => continue,
                    Ok(Status::Complete(head)) => answer(&buf[..head.len], view),
                    Err(e) => {
                        let status = e.status();
                        let text = format!("{}\n", reason(status).unwrap_or("Bad Request"));
                        response(status, "text/plain", text.as_bytes(), true, "")
                    }
                };
                conn.state = State::Writing { out, sent: 0 };
            }
            State::Writing { out, sent } => {
                match conn.stream.write(&out[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                }
                if *sent == out.len() {
                    conn.stream
                        .shutdown(std::net::Shutdown::Write)
                        .map_err(|_| ())?;
                    conn.state = State::Lingering;
                }
            }
            State::Lingering => {
                let mut sink = [0u8; 4096];
                for _ in 0..LINGER_READS {
                    match conn.stream.read(&mut sink) {
                        Ok(0) => return Err(()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(()),
                    }
                }
                // Still sending after its answer: not a probe; stop listening to it.
                return Err(());
            }
        }
    }
}

/// The answer to a complete admin request head.
fn answer(head: &[u8], view: View<'_>) -> Vec<u8> {
    let line = &head[head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len())..];
    let method = &line[..line.iter().position(|&b| b == b' ').unwrap_or(0)];
    let send_body = method != b"HEAD";
    if method != b"GET" && method != b"HEAD" {
        return response(
            405,
            "text/plain",
            b"only GET and HEAD\n",
            send_body,
            "Allow: GET, HEAD\r\n",
        );
    }
    match request_path(head) {
        b"/healthz" => response(200, "text/plain", b"ok\n", send_body, ""),
        b"/readyz" if view.ready => response(200, "text/plain", b"ready\n", send_body, ""),
        b"/readyz" => response(503, "text/plain", b"shutting down\n", send_body, ""),
        b"/metrics" => {
            let text = prometheus::render(
                &Snapshot::sum(view.counters),
                prometheus::Process {
                    ready: view.ready,
                    start_time: view.start_time,
                    mix: view.mix,
                    faults: view.faults,
                    delay: view.delay,
                },
            );
            response(
                200,
                prometheus::CONTENT_TYPE,
                text.as_bytes(),
                send_body,
                "",
            )
        }
        _ => response(
            404,
            "text/plain",
            b"not found: try /healthz, /readyz or /metrics\n",
            send_body,
            "",
        ),
    }
}

/// A complete response that closes the connection.
fn response(status: u16, content_type: &str, body: &[u8], send_body: bool, extra: &str) -> Vec<u8> {
    let mut date = [0u8; IMF_FIXDATE_LEN];
    write_imf_fixdate(unix_now_coarse(), &mut date);
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nDate: {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n{extra}Connection: close\r\n\r\n",
        reason(status).unwrap_or(""),
        String::from_utf8_lossy(&date),
        body.len()
    )
    .into_bytes();
    if send_body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(head: &[u8], ready: bool) -> String {
        let counters = [WorkerCounters::default()];
        let view = View {
            counters: &counters,
            ready,
            start_time: 0.0,
            mix: &[],
            faults: false,
            delay: false,
        };
        String::from_utf8(answer(head, view)).unwrap()
    }

    #[test]
    fn routes() {
        let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(text(get("/healthz").as_bytes(), false).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text(get("/readyz?verbose").as_bytes(), true).ends_with("\r\n\r\nready\n"));
        assert!(text(get("/readyz").as_bytes(), false)
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        let m = text(get("/metrics").as_bytes(), true);
        assert!(m.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(m.contains("\r\n\r\n# HELP vrypt_requests_total "));
        assert!(text(get("/").as_bytes(), true).starts_with("HTTP/1.1 404 Not Found\r\n"));
        let post = text(b"POST /healthz HTTP/1.1\r\nHost: a\r\n\r\n", true);
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"));
        let head = text(b"\r\nHEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", true);
        assert!(head.starts_with("HTTP/1.1 200 ") && head.ends_with("Connection: close\r\n\r\n"));
        assert!(head.contains("Content-Length: 3\r\n"));
    }
}
