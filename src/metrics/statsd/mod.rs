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
//!
//! # Layout
//!
//! `lines` turns counter snapshots into datagrams and `target` parses the
//! collector address, both without I/O; `collector` resolves, connects and
//! sends on the pusher thread; `warn` rate-limits its warnings. This file
//! holds the configuration, [`spawn`] and the thread's flush loop.

mod collector;
mod lines;
mod target;
mod warn;

pub(crate) use lines::{delta, format_lines, longest_line, pack, tag_suffix};
pub(crate) use target::{order_addrs, Target};
pub(crate) use warn::WarnLimiter;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::metrics::{Snapshot, WorkerCounters};

/// Largest datagram sent, in bytes.
pub(crate) const MAX_DATAGRAM: usize = 1432;
/// How often a host name is resolved again while things work.
pub(crate) const RERESOLVE_EVERY: Duration = Duration::from_secs(30);
/// Shortest gap between two resolutions triggered by send errors.
pub(crate) const RERESOLVE_AFTER_ERROR: Duration = Duration::from_secs(2);
/// At most one warning per this period; the others are counted and reported.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(60);
/// Longest sleep between two looks at the stop flag.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// Where and how to send metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatsdConfig {
    /// The statuses of `--status-mix`, each counted as `responses.status.CODE`.
    pub(crate) mix_statuses: Vec<u16>,
    /// `--fault` is on: send `faults.*` counters.
    pub(crate) faults: bool,
    /// `--delay` is on: send `delayed` and `delay_us`.
    pub(crate) delay: bool,
    /// Collector as `host:port`, `ipv4:port` or `[ipv6]:port`.
    pub(crate) target: String,
    /// Time between two flushes.
    pub(crate) interval: Duration,
    /// Prepended to every metric name, followed by a dot (`vrypt` gives `vrypt.rps`).
    pub(crate) prefix: String,
    /// DogStatsD tags appended to every line as `|#k:v,...`; empty for plain StatsD.
    pub(crate) tags: Vec<(String, String)>,
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
pub(crate) fn spawn(
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
// The thread: one flush per interval; reaching the collector is in `collector`.

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
        let lines = format_lines(
            &self.cfg.prefix,
            &self.tags,
            delta,
            elapsed,
            open,
            lines::Shaping {
                faults: self.cfg.faults,
                mix: &self.cfg.mix_statuses,
                delay: self.cfg.delay,
            },
        );
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

    fn config(target: String, interval: Duration) -> StatsdConfig {
        StatsdConfig {
            mix_statuses: Vec::new(),
            faults: false,
            delay: false,
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
                lines.extend(datagram_lines(&buf[..n]));
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
            lines.extend(datagram_lines(&buf[..n]));
        }
        lines
    }

    /// The StatsD lines of one datagram.
    fn datagram_lines(datagram: &[u8]) -> impl Iterator<Item = String> + '_ {
        std::str::from_utf8(datagram)
            .unwrap()
            .split('\n')
            .map(str::to_string)
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
