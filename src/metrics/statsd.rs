//! The StatsD pusher: one thread that reads every worker's counters once per
//! interval and sends the changes to a StatsD collector over UDP.
//!
//! # What is sent
//!
//! Every interval, with the default prefix `vrypt`:
//!
//! | line                                  | type    | meaning                                     |
//! |---------------------------------------|---------|---------------------------------------------|
//! | `vrypt.rps:<f>\|g`                    | gauge   | requests per second over the elapsed interval |
//! | `vrypt.requests:<n>\|c`               | counter | requests answered since the last flush      |
//! | `vrypt.responses.2xx:<n>\|c` (3xx, 4xx, 5xx) | counter | responses by status class            |
//! | `vrypt.bytes_sent:<n>\|c`             | counter | bytes handed to the kernel                  |
//! | `vrypt.connections.accepted:<n>\|c`   | counter | connections accepted                        |
//! | `vrypt.connections.closed:<n>\|c`     | counter | connections closed                          |
//! | `vrypt.timeouts:<n>\|c`               | counter | connections closed by a timer               |
//! | `vrypt.parse_errors:<n>\|c`           | counter | malformed requests                          |
//! | `vrypt.accept_errors:<n>\|c`          | counter | failed `accept` calls                       |
//! | `vrypt.connections.open:<n>\|g`       | gauge   | connections open right now                  |
//!
//! Counters are sent every interval **even when their delta is 0**: Graphite then
//! draws a continuous line at zero instead of a gap, and a reader can tell "idle"
//! from "metrics lost". One flush is about 330 bytes and fits one datagram.
//! With `tags`, every line ends with DogStatsD tags `|#k:v,k2:v2`.
//!
//! Lines are packed several to a datagram, separated by `\n`, and no datagram is
//! longer than [`MAX_DATAGRAM`] bytes (a 1,500-byte Ethernet MTU minus IPv6 and
//! UDP headers, with room for tunnels). [`spawn`] refuses a prefix or tag set so
//! long that a single line could not fit.
//!
//! # Delivery
//!
//! StatsD is fire-and-forget. Deltas of an interval whose datagrams cannot be
//! sent are dropped, not carried over, so a collector that comes back does not
//! see a spike. The socket is non-blocking: the metrics thread never waits on the
//! network, and the workers never wait on the metrics thread.
//!
//! # Resolving the collector
//!
//! `host:port` may name a host (`graphite:8125`). The name is resolved on a short
//! helper thread, so a slow or dead DNS server never delays a flush or shutdown;
//! it is resolved again every [`RERESOLVE_EVERY`] and soon after a send error, so a
//! collector that starts later or moves (Compose, Kubernetes) is found. IPv4
//! addresses are tried first (most StatsD daemons listen on `0.0.0.0`); when the
//! kernel reports the port unreachable, the next resolved address is tried.
//! Warnings are rate-limited to one per [`WARN_EVERY`], each saying how many were
//! suppressed.

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::log::Level;
use crate::metrics::{Snapshot, WorkerCounters};

/// Largest datagram sent, in bytes.
pub const MAX_DATAGRAM: usize = 1432;
/// How often a host name is resolved again while things work.
pub const RERESOLVE_EVERY: Duration = Duration::from_secs(30);
/// Shortest gap between two resolutions triggered by send errors.
pub const RERESOLVE_AFTER_ERROR: Duration = Duration::from_secs(2);
/// At most one warning per this period; the others are counted and reported.
pub const WARN_EVERY: Duration = Duration::from_secs(60);
/// Longest sleep between two looks at the stop flag.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// Where and how to send metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsdConfig {
    /// Collector as `host:port`, `ipv4:port` or `[ipv6]:port`.
    pub target: String,
    /// Time between two flushes.
    pub interval: Duration,
    /// Prepended to every metric name, followed by a dot (`vrypt` gives `vrypt.rps`).
    pub prefix: String,
    /// DogStatsD tags appended to every line as `|#k:v,...`; empty for plain StatsD.
    pub tags: Vec<(String, String)>,
}

/// Starts the metrics thread.
///
/// It flushes every `cfg.interval` and, when `stop` becomes true, flushes once
/// more (so the last requests before shutdown are counted) and returns. It looks
/// at `stop` at least every 100 ms; calling `handle.thread().unpark()` after
/// setting `stop` makes it notice at once.
///
/// Fails with `InvalidInput` when the target is not `host:port`, the interval is
/// zero, or the prefix and tags are so long that a line could exceed
/// [`MAX_DATAGRAM`]; and with the OS error when the thread cannot be created.
/// An unresolvable or unreachable collector is not an error here: it is retried
/// in the background.
pub fn spawn(
    cfg: StatsdConfig,
    slots: Arc<[WorkerCounters]>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let target =
        Target::parse(&cfg.target).map_err(|e| invalid(format!("--statsd {}: {e}", cfg.target)))?;
    if cfg.interval.is_zero() {
        return Err(invalid(
            "--statsd-interval must be greater than zero".to_string(),
        ));
    }
    let tags = tag_suffix(&cfg.tags);
    let longest = longest_line(&cfg.prefix, &tags);
    if longest > MAX_DATAGRAM {
        return Err(invalid(format!(
            "--statsd-prefix and --statsd-tags make lines of up to {longest} bytes; the limit is {MAX_DATAGRAM}"
        )));
    }
    // The baseline is taken here, not on the new thread, so that everything
    // counted after `spawn` returns is reported.
    let baseline = (Snapshot::sum(&slots), Instant::now());
    thread::Builder::new()
        .name("statsd".to_string())
        .spawn(move || Pusher::new(cfg, target, tags).run(&slots, &stop, baseline))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

// ---------------------------------------------------------------------------
// Pure part: formatting and packing (unit-tested below).

/// Builds the `|#k:v,k2:v2` suffix for DogStatsD tags; empty when there are none.
pub fn tag_suffix(tags: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        s.push_str(if i == 0 { "|#" } else { "," });
        s.push_str(k);
        if !v.is_empty() {
            s.push(':');
            s.push_str(v);
        }
    }
    s
}

/// Formats a gauge value: an integer when whole, else at most two decimals.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() || v <= 0.0 {
        // A leading sign would make StatsD treat a gauge as a relative change.
        return "0".to_string();
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Requests per second: `delta` requests over `elapsed`.
pub fn rate(delta: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        delta as f64 / secs
    }
}

/// The StatsD lines of one flush, without line terminators.
///
/// `delta` holds the counter changes since the previous flush, `elapsed` the
/// time they cover, `open` the current number of open connections, `tags` the
/// output of [`tag_suffix`].
pub fn format_lines(
    prefix: &str,
    tags: &str,
    delta: &Snapshot,
    elapsed: Duration,
    open: u64,
) -> Vec<String> {
    let counters: [(&str, u64); 11] = [
        ("requests", delta.requests),
        ("responses.2xx", delta.responses_2xx),
        ("responses.3xx", delta.responses_3xx),
        ("responses.4xx", delta.responses_4xx),
        ("responses.5xx", delta.responses_5xx),
        ("bytes_sent", delta.bytes_sent),
        ("connections.accepted", delta.connections_accepted),
        ("connections.closed", delta.connections_closed),
        ("timeouts", delta.timeouts),
        ("parse_errors", delta.parse_errors),
        ("accept_errors", delta.accept_errors),
    ];
    let mut lines = Vec::with_capacity(counters.len() + 2);
    lines.push(line(
        prefix,
        "rps",
        &format_value(rate(delta.requests, elapsed)),
        "g",
        tags,
    ));
    for (name, value) in counters {
        lines.push(line(prefix, name, &value.to_string(), "c", tags));
    }
    lines.push(line(
        prefix,
        "connections.open",
        &open.to_string(),
        "g",
        tags,
    ));
    lines
}

fn line(prefix: &str, name: &str, value: &str, kind: &str, tags: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len() + value.len() + tags.len() + 8);
    if !prefix.is_empty() {
        s.push_str(prefix);
        s.push('.');
    }
    // Writing into a String cannot fail.
    let _ = write!(s, "{name}:{value}|{kind}{tags}");
    s
}

/// Length of the longest line [`format_lines`] can produce for this prefix and tags.
pub fn longest_line(prefix: &str, tags: &str) -> usize {
    let max = Snapshot {
        requests: u64::MAX,
        responses_2xx: u64::MAX,
        responses_3xx: u64::MAX,
        responses_4xx: u64::MAX,
        responses_5xx: u64::MAX,
        bytes_sent: u64::MAX,
        connections_accepted: u64::MAX,
        connections_closed: u64::MAX,
        timeouts: u64::MAX,
        parse_errors: u64::MAX,
        accept_errors: u64::MAX,
    };
    format_lines(prefix, tags, &max, Duration::from_nanos(1), u64::MAX)
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
}

/// Packs lines into datagrams of at most `max` bytes, lines separated by `\n`.
///
/// Order is kept. A line longer than `max` on its own is dropped ([`spawn`]
/// makes sure this cannot happen with real metrics).
pub fn pack(lines: &[String], max: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(max);
    for l in lines {
        if l.len() > max {
            continue;
        }
        let need = if cur.is_empty() {
            l.len()
        } else {
            cur.len() + 1 + l.len()
        };
        if need > max {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(max)));
        }
        if !cur.is_empty() {
            cur.push(b'\n');
        }
        cur.extend_from_slice(l.as_bytes());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Field-by-field `now - before`, wrapping like the counters themselves.
pub fn delta(now: &Snapshot, before: &Snapshot) -> Snapshot {
    Snapshot {
        requests: now.requests.wrapping_sub(before.requests),
        responses_2xx: now.responses_2xx.wrapping_sub(before.responses_2xx),
        responses_3xx: now.responses_3xx.wrapping_sub(before.responses_3xx),
        responses_4xx: now.responses_4xx.wrapping_sub(before.responses_4xx),
        responses_5xx: now.responses_5xx.wrapping_sub(before.responses_5xx),
        bytes_sent: now.bytes_sent.wrapping_sub(before.bytes_sent),
        connections_accepted: now
            .connections_accepted
            .wrapping_sub(before.connections_accepted),
        connections_closed: now
            .connections_closed
            .wrapping_sub(before.connections_closed),
        timeouts: now.timeouts.wrapping_sub(before.timeouts),
        parse_errors: now.parse_errors.wrapping_sub(before.parse_errors),
        accept_errors: now.accept_errors.wrapping_sub(before.accept_errors),
    }
}

/// A collector address as given: a literal socket address or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `1.2.3.4:8125` or `[::1]:8125`: nothing to resolve.
    Addr(SocketAddr),
    /// `graphite:8125`: resolved in the background.
    Name(String, u16),
}

impl Target {
    /// Parses `host:port`, `ipv4:port` or `[ipv6]:port`.
    pub fn parse(s: &str) -> Result<Target, &'static str> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Target::Addr(a));
        }
        let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
        let port: u16 = port
            .parse()
            .map_err(|_| "the port must be a number from 1 to 65535")?;
        if port == 0 {
            return Err("the port must be a number from 1 to 65535");
        }
        if host.is_empty() {
            return Err("the host is empty");
        }
        if host.starts_with('[') || host.contains(':') {
            return Err("an IPv6 address must be written as [ADDR]:PORT");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err("the host name has characters a DNS name cannot have");
        }
        Ok(Target::Name(host.to_string(), port))
    }
}

/// Orders resolved addresses: IPv4 first, each family in resolver order, no duplicates.
pub fn order_addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in addrs {
        let list = if a.is_ipv4() { &mut v4 } else { &mut v6 };
        if !list.contains(&a) {
            list.push(a);
        }
    }
    v4.extend(v6);
    v4
}

/// Lets one warning through per period and counts the rest.
#[derive(Debug)]
pub struct WarnLimiter {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter that lets one warning through per `period`.
    pub fn new(period: Duration) -> WarnLimiter {
        WarnLimiter {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a warning may be printed now, `n` being how many were
    /// suppressed since the last one printed; `None` when this one is suppressed.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// I/O part: the thread.

/// Result of one background resolution.
type Resolved = io::Result<Vec<SocketAddr>>;

struct Pusher {
    cfg: StatsdConfig,
    target: Target,
    tags: String,
    /// Resolved addresses, IPv4 first; `current` indexes the one in use.
    addrs: Vec<SocketAddr>,
    current: usize,
    socket: Option<UdpSocket>,
    /// A resolution running on a helper thread.
    pending: Option<Receiver<Resolved>>,
    last_resolve: Option<Instant>,
    /// Set after a send error: resolve again once `RERESOLVE_AFTER_ERROR` has passed.
    resolve_soon: bool,
    warn: WarnLimiter,
}

impl Pusher {
    fn new(cfg: StatsdConfig, target: Target, tags: String) -> Pusher {
        Pusher {
            cfg,
            target,
            tags,
            addrs: Vec::new(),
            current: 0,
            socket: None,
            pending: None,
            last_resolve: None,
            resolve_soon: false,
            warn: WarnLimiter::new(WARN_EVERY),
        }
    }

    fn run(mut self, slots: &[WorkerCounters], stop: &AtomicBool, baseline: (Snapshot, Instant)) {
        if let Target::Addr(a) = self.target {
            self.use_addrs(vec![a]);
        } else {
            self.start_resolve(Instant::now());
        }
        let (mut last, mut last_at) = baseline;
        let mut next = last_at + self.cfg.interval;
        loop {
            let stopping = sleep_until(next, stop);
            let now = Instant::now();
            self.poll_resolve(now);
            let snap = Snapshot::sum(slots);
            self.flush(
                &delta(&snap, &last),
                now.saturating_duration_since(last_at),
                snap.connections_open(),
            );
            last = snap;
            last_at = now;
            if stopping {
                return;
            }
            next += self.cfg.interval;
            if next <= now {
                // We fell behind (a suspended process, a very short interval):
                // skip the missed ticks instead of flushing in a burst.
                next = now + self.cfg.interval;
            }
            self.maybe_resolve(now);
        }
    }

    fn flush(&mut self, delta: &Snapshot, elapsed: Duration, open: u64) {
        let lines = format_lines(&self.cfg.prefix, &self.tags, delta, elapsed, open);
        let datagrams = pack(&lines, MAX_DATAGRAM);
        if self.socket.is_none() {
            // Not resolved yet (or never): this interval is lost, the warning
            // about the resolution has been printed already.
            return;
        }
        for d in &datagrams {
            self.send(d);
        }
    }

    /// Sends one datagram.
    ///
    /// On a connected UDP socket, "connection refused" reports an ICMP "port
    /// unreachable" caused by an *earlier* datagram, and the datagram passed to
    /// this call was not sent. So the datagram is sent once more: to the next
    /// resolved address when there is one (the collector may listen on the
    /// other family), else to the same one (a collector that has just started
    /// gets it; a dead one costs one extra syscall per flush).
    fn send(&mut self, datagram: &[u8]) {
        for _attempt in 0..2 {
            let Some(sock) = &self.socket else { return };
            let err = match sock.send(datagram) {
                Ok(_) => return,
                Err(e) => e,
            };
            let now = Instant::now();
            self.resolve_soon = true;
            let addr = self.addrs.get(self.current).copied();
            if let Some(n) = self.warn.allow(now) {
                crate::log!(
                    Level::Warn,
                    "statsd_send_failed",
                    "target={} addr={} error={} suppressed={}",
                    crate::log::quote(&self.cfg.target),
                    addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
                    crate::log::quote(&err.to_string()),
                    n
                );
            }
            if err.kind() != io::ErrorKind::ConnectionRefused {
                return;
            }
            if self.addrs.len() > 1 {
                self.current = (self.current + 1) % self.addrs.len();
                self.connect_current();
            }
        }
    }

    /// Starts a new resolution when it is due.
    fn maybe_resolve(&mut self, now: Instant) {
        if matches!(self.target, Target::Addr(_)) || self.pending.is_some() {
            return;
        }
        let since = self
            .last_resolve
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let due = since >= RERESOLVE_EVERY
            || (since >= RERESOLVE_AFTER_ERROR && (self.resolve_soon || self.socket.is_none()));
        if due {
            self.start_resolve(now);
        }
    }

    fn start_resolve(&mut self, now: Instant) {
        let Target::Name(host, port) = &self.target else {
            return;
        };
        let (host, port) = (host.clone(), *port);
        let (tx, rx) = mpsc::channel();
        self.last_resolve = Some(now);
        self.resolve_soon = false;
        // A thread per resolution keeps a hanging DNS server from ever delaying
        // a flush or shutdown; at most one runs at a time, and a stale one just
        // finds the receiver gone.
        let spawned = thread::Builder::new()
            .name("statsd-resolve".to_string())
            .spawn(move || {
                let r = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>());
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(e) => self.warn_resolve(now, &e),
        }
    }

    /// Takes the result of a finished resolution, if any.
    fn poll_resolve(&mut self, now: Instant) {
        let Some(rx) = &self.pending else { return };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                Err(io::Error::other("resolver thread ended without an answer"))
            }
        };
        self.pending = None;
        match result {
            Ok(list) if !list.is_empty() => self.use_addrs(order_addrs(list)),
            Ok(_) => self.warn_resolve(now, &io::Error::other("no addresses")),
            Err(e) => self.warn_resolve(now, &e),
        }
    }

    fn warn_resolve(&mut self, now: Instant, e: &io::Error) {
        if let Some(n) = self.warn.allow(now) {
            crate::log!(
                Level::Warn,
                "statsd_resolve_failed",
                "target={} error={} suppressed={}",
                crate::log::quote(&self.cfg.target),
                crate::log::quote(&e.to_string()),
                n
            );
        }
    }

    /// Switches to a new address list, keeping the socket when the address in
    /// use is still in it.
    fn use_addrs(&mut self, addrs: Vec<SocketAddr>) {
        let in_use = self
            .socket
            .as_ref()
            .and_then(|_| self.addrs.get(self.current).copied());
        if let Some(a) = in_use {
            if let Some(i) = addrs.iter().position(|x| *x == a) {
                self.addrs = addrs;
                self.current = i;
                return;
            }
        }
        self.addrs = addrs;
        self.current = 0;
        self.connect_current();
        if let Some(a) = self.addrs.get(self.current) {
            crate::log!(
                Level::Debug,
                "statsd_target",
                "target={} addr={}",
                crate::log::quote(&self.cfg.target),
                a
            );
        }
    }

    /// Opens a non-blocking UDP socket connected to the current address.
    fn connect_current(&mut self) {
        self.socket = None;
        let Some(&addr) = self.addrs.get(self.current) else {
            return;
        };
        let bind: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let opened = UdpSocket::bind(bind).and_then(|s| {
            s.connect(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        });
        match opened {
            Ok(s) => self.socket = Some(s),
            Err(e) => {
                self.resolve_soon = true;
                if let Some(n) = self.warn.allow(Instant::now()) {
                    crate::log!(
                        Level::Warn,
                        "statsd_socket_failed",
                        "target={} addr={} error={} suppressed={}",
                        crate::log::quote(&self.cfg.target),
                        addr,
                        crate::log::quote(&e.to_string()),
                        n
                    );
                }
            }
        }
    }
}

/// Sleeps until `deadline` in slices of at most [`SLEEP_SLICE`]; returns early,
/// with `true`, as soon as `stop` is set.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::park_timeout((deadline - now).min(SLEEP_SLICE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(requests: u64) -> Snapshot {
        Snapshot {
            requests,
            responses_2xx: requests,
            bytes_sent: requests.wrapping_mul(100),
            ..Snapshot::default()
        }
    }

    #[test]
    fn lines_have_every_metric_in_order() {
        let lines = format_lines("vrypt", "", &snap(50), Duration::from_millis(500), 3);
        assert_eq!(
            lines,
            [
                "vrypt.rps:100|g",
                "vrypt.requests:50|c",
                "vrypt.responses.2xx:50|c",
                "vrypt.responses.3xx:0|c",
                "vrypt.responses.4xx:0|c",
                "vrypt.responses.5xx:0|c",
                "vrypt.bytes_sent:5000|c",
                "vrypt.connections.accepted:0|c",
                "vrypt.connections.closed:0|c",
                "vrypt.timeouts:0|c",
                "vrypt.parse_errors:0|c",
                "vrypt.accept_errors:0|c",
                "vrypt.connections.open:3|g",
            ]
        );
    }

    #[test]
    fn tags_and_empty_prefix() {
        let tags = tag_suffix(&[
            ("env".into(), "prod".into()),
            ("az".into(), "b".into()),
            ("canary".into(), String::new()),
        ]);
        assert_eq!(tags, "|#env:prod,az:b,canary");
        let lines = format_lines("", &tags, &snap(1), Duration::from_secs(1), 0);
        assert_eq!(lines[0], "rps:1|g|#env:prod,az:b,canary");
        assert_eq!(lines[12], "connections.open:0|g|#env:prod,az:b,canary");
        assert_eq!(tag_suffix(&[]), "");
    }

    #[test]
    fn gauge_values() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(1.0 / 3.0), "0.33");
        assert_eq!(format_value(-1.0), "0");
        assert_eq!(format_value(f64::NAN), "0");
        assert_eq!(format_value(f64::INFINITY), "0");
        assert_eq!(format_value(1e9), "1000000000");
        assert_eq!(rate(7, Duration::ZERO), 0.0);
        assert_eq!(rate(300, Duration::from_millis(1500)), 200.0);
    }

    #[test]
    fn deltas_wrap() {
        let before = Snapshot {
            requests: u64::MAX - 1,
            ..snap(0)
        };
        let now = Snapshot {
            requests: 3,
            ..snap(0)
        };
        assert_eq!(delta(&now, &before).requests, 5);
        assert_eq!(delta(&snap(10), &snap(4)), snap(6));
    }

    #[test]
    fn packing_respects_the_limit_and_keeps_every_line() {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("vrypt.metric_{i}:{}|c", i * 7919))
            .collect();
        let packets = pack(&lines, MAX_DATAGRAM);
        assert!(packets.len() > 1);
        for p in &packets {
            assert!(p.len() <= MAX_DATAGRAM, "{} bytes", p.len());
            assert!(!p.ends_with(b"\n") && !p.starts_with(b"\n"));
        }
        let joined: Vec<String> = packets
            .iter()
            .flat_map(|p| {
                std::str::from_utf8(p)
                    .unwrap()
                    .split('\n')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(joined, lines);
        // Packets are filled: each one but the last could not take the next line.
        let mut idx = 0;
        for p in &packets[..packets.len() - 1] {
            idx += p.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(p.len() + 1 + lines[idx].len() > MAX_DATAGRAM);
        }
    }

    #[test]
    fn packing_edge_cases() {
        assert!(pack(&[], 10).is_empty());
        let exact = vec!["a".repeat(10)];
        assert_eq!(pack(&exact, 10), vec![b"aaaaaaaaaa".to_vec()]);
        let two = vec!["abcd".to_string(), "efgh".to_string()];
        assert_eq!(pack(&two, 9), vec![b"abcd\nefgh".to_vec()]);
        assert_eq!(pack(&two, 8), vec![b"abcd".to_vec(), b"efgh".to_vec()]);
        // Longer than a datagram: dropped rather than sent oversize.
        let long = vec!["x".repeat(11), "ok".to_string()];
        assert_eq!(pack(&long, 10), vec![b"ok".to_vec()]);
    }

    #[test]
    fn one_flush_fits_one_datagram() {
        let lines = format_lines(
            "vrypt",
            "",
            &snap(u64::MAX),
            Duration::from_nanos(1),
            u64::MAX,
        );
        assert_eq!(pack(&lines, MAX_DATAGRAM).len(), 1);
        assert!(longest_line("vrypt", "") < 60);
        let tags = tag_suffix(&[("k".into(), "v".repeat(1400))]);
        assert!(longest_line("vrypt", &tags) > MAX_DATAGRAM);
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("127.0.0.1:8125"),
            Ok(Target::Addr("127.0.0.1:8125".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("[::1]:9"),
            Ok(Target::Addr("[::1]:9".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("graphite:8125"),
            Ok(Target::Name("graphite".into(), 8125))
        );
        assert_eq!(
            Target::parse("statsd.monitoring.svc.cluster.local:8125"),
            Ok(Target::Name(
                "statsd.monitoring.svc.cluster.local".into(),
                8125
            ))
        );
        for bad in [
            "graphite",
            "graphite:",
            ":8125",
            "graphite:0",
            "graphite:65536",
            "::1:8125",
            "[::1]",
            "a b:1",
            "h:x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4_first() {
        let a: Vec<SocketAddr> = ["[::1]:1", "127.0.0.1:1", "[::1]:1", "10.0.0.1:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let want: Vec<SocketAddr> = ["127.0.0.1:1", "10.0.0.1:1", "[::1]:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(order_addrs(a), want);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::new(Duration::from_secs(60));
        assert_eq!(w.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(w.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(w.allow(t0 + Duration::from_secs(61)), Some(5));
        assert_eq!(w.allow(t0 + Duration::from_secs(62)), None);
        assert_eq!(w.allow(t0 + Duration::from_secs(200)), Some(1));
    }

    fn config(target: String, interval: Duration) -> StatsdConfig {
        StatsdConfig {
            target,
            interval,
            prefix: "t".into(),
            tags: vec![("a".into(), "b".into())],
        }
    }

    #[test]
    fn spawn_rejects_bad_config() {
        let slots: Arc<[WorkerCounters]> = Arc::from(vec![WorkerCounters::default()]);
        let stop = Arc::new(AtomicBool::new(false));
        let bad = |cfg| {
            spawn(cfg, slots.clone(), stop.clone())
                .map(|_| ())
                .unwrap_err()
                .kind()
        };
        assert_eq!(
            bad(config("nohost".into(), Duration::from_secs(1))),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            bad(config("127.0.0.1:1".into(), Duration::ZERO)),
            io::ErrorKind::InvalidInput
        );
        let mut long = config("127.0.0.1:1".into(), Duration::from_secs(1));
        long.prefix = "p".repeat(1400);
        assert_eq!(bad(long), io::ErrorKind::InvalidInput);
    }

    /// Receives datagrams until `enough` says so or three seconds pass.
    fn receive(sock: &UdpSocket, mut enough: impl FnMut(&[String]) -> bool) -> Vec<String> {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut lines = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline && !enough(&lines) {
            if let Ok(n) = sock.recv(&mut buf) {
                assert!(n <= MAX_DATAGRAM);
                lines.extend(
                    std::str::from_utf8(&buf[..n])
                        .unwrap()
                        .split('\n')
                        .map(str::to_string),
                );
            }
        }
        lines
    }

    /// Receives what is already queued (the sender has stopped).
    fn drain(sock: &UdpSocket) -> Vec<String> {
        sock.set_nonblocking(true).unwrap();
        let mut lines = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            lines.extend(
                std::str::from_utf8(&buf[..n])
                    .unwrap()
                    .split('\n')
                    .map(str::to_string),
            );
        }
        lines
    }

    fn sum_of(lines: &[String], name: &str) -> u64 {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|rest| rest.strip_prefix(':'))
            .filter_map(|rest| rest.split('|').next())
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    }

    #[test]
    fn thread_sends_deltas_and_final_flush() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = rx.local_addr().unwrap().to_string();
        let slots: Arc<[WorkerCounters]> =
            Arc::from(vec![WorkerCounters::default(), WorkerCounters::default()]);
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(
            config(target, Duration::from_millis(50)),
            slots.clone(),
            stop.clone(),
        )
        .unwrap();
        crate::metrics::bump(&slots[0].requests, 7);
        crate::metrics::bump(&slots[1].requests, 5);
        let lines = receive(&rx, |l| sum_of(l, "t.requests") >= 12);
        assert_eq!(sum_of(&lines, "t.requests"), 12);
        assert!(lines.iter().all(|l| l.ends_with("|#a:b")), "{lines:?}");
        // Counted after the last regular flush, sent by the final one.
        crate::metrics::bump(&slots[1].requests, 30);
        crate::metrics::bump(&slots[1].connections_accepted, 2);
        let t = Instant::now();
        stop.store(true, Ordering::Release);
        h.thread().unpark();
        h.join().unwrap();
        assert!(t.elapsed() < Duration::from_millis(500));
        let rest = drain(&rx);
        assert_eq!(
            sum_of(&lines, "t.requests") + sum_of(&rest, "t.requests"),
            42
        );
        assert!(
            rest.iter().any(|l| l.starts_with("t.connections.open:2|g")),
            "{rest:?}"
        );
    }

    #[test]
    fn names_are_resolved_and_dead_targets_do_not_block() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let slots: Arc<[WorkerCounters]> = Arc::from(vec![WorkerCounters::default()]);
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(
            config(format!("localhost:{port}"), Duration::from_millis(50)),
            slots.clone(),
            stop.clone(),
        )
        .unwrap();
        crate::metrics::bump(&slots[0].requests, 3);
        let lines = receive(&rx, |l| sum_of(l, "t.requests") >= 3);
        assert_eq!(sum_of(&lines, "t.requests"), 3);
        stop.store(true, Ordering::Release);
        h.join().unwrap();

        // Unresolvable name and a closed port: the thread keeps going and stops promptly.
        for target in [
            "no-such-host.invalid:8125".to_string(),
            format!("127.0.0.1:{}", free_udp_port()),
        ] {
            let stop = Arc::new(AtomicBool::new(false));
            let h = spawn(
                config(target, Duration::from_millis(20)),
                slots.clone(),
                stop.clone(),
            )
            .unwrap();
            thread::sleep(Duration::from_millis(300));
            let t = Instant::now();
            stop.store(true, Ordering::Release);
            h.join().unwrap();
            assert!(t.elapsed() < Duration::from_millis(500));
        }
    }

    #[test]
    fn collector_that_starts_later_gets_everything_after_it_starts() {
        let port = free_udp_port();
        let slots: Arc<[WorkerCounters]> = Arc::from(vec![WorkerCounters::default()]);
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(
            config(format!("127.0.0.1:{port}"), Duration::from_millis(20)),
            slots.clone(),
            stop.clone(),
        )
        .unwrap();
        // Several flushes into a closed port leave an ICMP error pending.
        thread::sleep(Duration::from_millis(200));
        let rx = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        crate::metrics::bump(&slots[0].requests, 4);
        let lines = receive(&rx, |l| sum_of(l, "t.requests") >= 4);
        assert_eq!(sum_of(&lines, "t.requests"), 4);
        stop.store(true, Ordering::Release);
        h.join().unwrap();
    }

    fn free_udp_port() -> u16 {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
