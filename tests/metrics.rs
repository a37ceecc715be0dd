//! StatsD output of the real binary, read by a UDP listener on a free port.
//!
//! Each test starts `vrypt-server` on a kernel-chosen 127.0.0.1 port with a short
//! `--statsd-interval`, sends a known number of requests over raw sockets and
//! checks what arrives: counters summed over every datagram equal what was sent,
//! gauges are plausible, datagrams respect the size limit, and a dead or
//! unresolvable collector neither crashes the server nor floods its log.

mod common;

use common::Server;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

const MAX_DATAGRAM: usize = 1432;

/// Every line the server may send: (name without prefix, StatsD type).
const METRICS: [(&str, &str); 13] = [
    ("rps", "g"),
    ("requests", "c"),
    ("responses.2xx", "c"),
    ("responses.3xx", "c"),
    ("responses.4xx", "c"),
    ("responses.5xx", "c"),
    ("bytes_sent", "c"),
    ("connections.accepted", "c"),
    ("connections.closed", "c"),
    ("timeouts", "c"),
    ("parse_errors", "c"),
    ("accept_errors", "c"),
    ("connections.open", "g"),
];

// ---------------------------------------------------------------------------
// A running server and a minimal HTTP/1.1 load.

/// Starts the binary on a kernel-chosen 127.0.0.1 port with two workers and `args`.
fn start(args: &[&str]) -> Server {
    Server::start_with(
        common::command()
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .args(args),
    )
}

/// Sends `per_conn` keep-alive requests on each of `conns` connections, one
/// after another, checks every answer is a 200, closes the connections and
/// returns the number of bytes received.
fn load(server: &Server, conns: usize, per_conn: usize) -> u64 {
    let mut received = 0u64;
    for _ in 0..conns {
        let mut client = server.connect();
        for _ in 0..per_conn {
            client.send(b"GET /metrics-test HTTP/1.1\r\nHost: test\r\n\r\n");
            let response = client.response(false);
            response
                .header("content-length")
                .expect("no Content-Length");
            assert_eq!(response.status, 200);
            received += response.wire_len as u64;
        }
        assert!(
            client.buffered().is_empty(),
            "unexpected extra bytes after the responses"
        );
    }
    received
}

// ---------------------------------------------------------------------------
// The collector side.

/// One metric line: name (prefix included), value, type, tags.
#[derive(Debug, Clone)]
struct Line {
    name: String,
    value: f64,
    kind: String,
    tags: Option<String>,
}

fn parse_line(l: &str) -> Line {
    let (name, rest) = l
        .split_once(':')
        .unwrap_or_else(|| panic!("no ':' in {l:?}"));
    let mut parts = rest.split('|');
    let value = parts
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {l:?}"));
    let kind = parts
        .next()
        .unwrap_or_else(|| panic!("no type in {l:?}"))
        .to_string();
    let tags = parts.next().map(|t| {
        t.strip_prefix('#')
            .unwrap_or_else(|| panic!("bad tags in {l:?}"))
            .to_string()
    });
    assert!(parts.next().is_none(), "unexpected field in {l:?}");
    Line {
        name: name.to_string(),
        value,
        kind,
        tags,
    }
}

/// Datagrams received so far, each split into lines.
struct Collector {
    sock: UdpSocket,
    datagrams: Vec<Vec<Line>>,
}

impl Collector {
    fn bind(addr: &str) -> Collector {
        let sock = UdpSocket::bind(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Collector {
            sock,
            datagrams: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Receives for `d`.
    fn receive_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.receive_one();
        }
    }

    /// Receives until `done` holds, failing after `limit`.
    fn receive_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Collector) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {limit:?}; totals {:?}",
                self.totals()
            );
            self.receive_one();
        }
    }

    fn receive_one(&mut self) {
        let mut buf = [0u8; 65536];
        if let Ok(n) = self.sock.recv(&mut buf) {
            assert!(n <= MAX_DATAGRAM, "datagram of {n} bytes");
            let text = std::str::from_utf8(&buf[..n]).expect("datagram is not UTF-8");
            self.datagrams
                .push(text.split('\n').map(parse_line).collect());
        }
    }

    fn lines(&self) -> impl Iterator<Item = &Line> {
        self.datagrams.iter().flatten()
    }

    /// Sum of every value of `name` (counters).
    fn sum(&self, name: &str) -> u64 {
        self.lines()
            .filter(|l| l.name == name)
            .map(|l| l.value as u64)
            .sum()
    }

    /// Last value of `name` (gauges).
    fn last(&self, name: &str) -> Option<f64> {
        self.lines()
            .filter(|l| l.name == name)
            .map(|l| l.value)
            .last()
    }

    fn count(&self, name: &str) -> usize {
        self.lines().filter(|l| l.name == name).count()
    }

    fn totals(&self) -> BTreeMap<String, f64> {
        let mut t = BTreeMap::new();
        for l in self.lines() {
            *t.entry(l.name.clone()).or_insert(0.0) += l.value;
        }
        t
    }
}

// ---------------------------------------------------------------------------

#[test]
fn counters_sum_exactly_to_the_requests_sent() {
    const CONNS: usize = 8;
    const PER_CONN: usize = 125;
    const SENT: u64 = (CONNS * PER_CONN) as u64;
    let mut c = Collector::bind("127.0.0.1:0");
    let statsd = format!("127.0.0.1:{}", c.port());
    let mut server = start(&["--statsd", &statsd, "--statsd-interval", "200ms"]);

    let started = Instant::now();
    let received = load(&server, CONNS, PER_CONN);
    let load_time = started.elapsed();

    c.receive_until(Duration::from_secs(10), "all requests and closes", |c| {
        c.sum("vrypt.requests") >= SENT && c.sum("vrypt.connections.closed") >= CONNS as u64
    });
    // A few more flushes: nothing more may be counted.
    let flushes_before = c.count("vrypt.rps");
    c.receive_for(Duration::from_millis(1000));
    let idle_flushes = c.count("vrypt.rps") - flushes_before;
    assert!(
        (3..=7).contains(&idle_flushes),
        "{idle_flushes} flushes in 1 s at a 200 ms interval"
    );

    // Every line is a known metric of the right type, without tags.
    for l in c.lines() {
        let short = l
            .name
            .strip_prefix("vrypt.")
            .unwrap_or_else(|| panic!("unprefixed {l:?}"));
        let (_, kind) = METRICS
            .iter()
            .find(|(n, _)| *n == short)
            .unwrap_or_else(|| panic!("unknown {l:?}"));
        assert_eq!(&l.kind, kind, "{l:?}");
        assert!(l.tags.is_none(), "{l:?}");
        assert!(l.value >= 0.0, "{l:?}");
    }
    // Every flush sends every metric, zero deltas included.
    for d in &c.datagrams {
        assert_eq!(
            d.len(),
            METRICS.len(),
            "one flush per datagram, all metrics: {d:?}"
        );
    }

    assert_eq!(c.sum("vrypt.requests"), SENT);
    assert_eq!(c.sum("vrypt.responses.2xx"), SENT);
    for other in [
        "vrypt.responses.3xx",
        "vrypt.responses.4xx",
        "vrypt.responses.5xx",
    ] {
        assert_eq!(c.sum(other), 0, "{other}");
    }
    assert_eq!(c.sum("vrypt.bytes_sent"), received);
    assert_eq!(c.sum("vrypt.connections.accepted"), CONNS as u64);
    assert_eq!(c.sum("vrypt.connections.closed"), CONNS as u64);
    assert_eq!(c.sum("vrypt.parse_errors"), 0);
    assert_eq!(c.sum("vrypt.timeouts"), 0);
    assert_eq!(c.sum("vrypt.accept_errors"), 0);
    assert_eq!(c.last("vrypt.connections.open"), Some(0.0));

    // rps: within each flush, rate x elapsed = requests, and the elapsed time
    // of a 200 ms interval is well within 0.1 s .. 1 s.
    let mut peak = 0.0f64;
    for d in &c.datagrams {
        let get = |n: &str| d.iter().find(|l| l.name == n).map(|l| l.value).unwrap();
        let (rps, reqs) = (get("vrypt.rps"), get("vrypt.requests"));
        assert!(
            rps >= reqs * 0.99 && rps <= reqs * 10.0 + 0.01,
            "rps {rps} for {reqs} requests in one flush"
        );
        peak = peak.max(rps);
    }
    let mean = SENT as f64 / load_time.as_secs_f64().max(0.2);
    assert!(peak > 0.0, "rps never above 0");
    eprintln!("sent {SENT} requests in {load_time:?} (~{mean:.0}/s); peak rps gauge {peak}");

    // Shutdown: exit 0, and the final flush adds nothing unexpected.
    let status = server.stop(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    c.receive_for(Duration::from_millis(300));
    assert_eq!(c.sum("vrypt.requests"), SENT);
}

#[test]
fn final_flush_reports_requests_counted_just_before_shutdown() {
    let mut c = Collector::bind("127.0.0.1:0");
    let statsd = format!("127.0.0.1:{}", c.port());
    // A long interval: only the final flush at shutdown can report these.
    let mut server = start(&["--statsd", &statsd, "--statsd-interval", "1m"]);
    load(&server, 1, 37);
    let status = server.stop(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    c.receive_until(Duration::from_secs(2), "final flush", |c| {
        c.sum("vrypt.requests") >= 37
    });
    c.receive_for(Duration::from_millis(200));
    assert_eq!(c.sum("vrypt.requests"), 37);
}

#[test]
fn host_names_prefix_and_tags() {
    let mut c = Collector::bind("127.0.0.1:0");
    let statsd = format!("localhost:{}", c.port());
    let mut server = start(&[
        "--statsd",
        &statsd,
        "--statsd-interval",
        "100ms",
        "--statsd-prefix",
        "edge.eu1",
        "--statsd-tags",
        "env:test,team:edge",
    ]);
    load(&server, 2, 10);
    c.receive_until(Duration::from_secs(10), "20 requests via localhost", |c| {
        c.sum("edge.eu1.requests") >= 20
    });
    c.receive_for(Duration::from_millis(300));
    assert_eq!(c.sum("edge.eu1.requests"), 20);
    for l in c.lines() {
        assert!(l.name.starts_with("edge.eu1."), "{l:?}");
        assert_eq!(l.tags.as_deref(), Some("env:test,team:edge"), "{l:?}");
    }
    assert!(server.stop(Duration::from_secs(10)).success());
}

/// Warning lines about StatsD in the server's log.
fn statsd_warnings(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains("statsd") && !l.contains("level=info") && !l.contains("level=debug"))
        .cloned()
        .collect()
}

#[test]
fn dead_or_unresolvable_collector_is_harmless() {
    // A UDP port nothing listens on (ICMP port unreachable) and a name that
    // cannot resolve (.invalid is reserved for exactly that).
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for target in [closed.to_string(), "no-such-host.invalid:8125".to_string()] {
        let mut server = start(&["--statsd", &target, "--statsd-interval", "50ms"]);
        // Serve for ~2 s (40 intervals) while the pusher fails over and over.
        let until = Instant::now() + Duration::from_secs(2);
        let mut rounds = 0;
        while Instant::now() < until && rounds < 200 {
            load(&server, 1, 10);
            rounds += 1;
            thread::sleep(Duration::from_millis(10));
        }
        let t = Instant::now();
        let status = server.stop(Duration::from_secs(5));
        let log = server.log_lines();
        assert!(status.success(), "{target}: {status}\n{}", log.join("\n"));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{target}: slow shutdown {:?}",
            t.elapsed()
        );
        let warnings = statsd_warnings(&log);
        assert!(
            warnings.len() <= 2,
            "{target}: log flood:\n{}",
            warnings.join("\n")
        );
        assert!(
            log.len() < 30,
            "{target}: {} log lines:\n{}",
            log.len(),
            log.join("\n")
        );
        assert!(
            !log.iter().any(|l| l.contains("panicked")),
            "{target}:\n{}",
            log.join("\n")
        );
    }
}

#[test]
fn collector_that_starts_later_is_found() {
    // Reserve a port, release it, start the server pointing at it, then bind it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let statsd = format!("localhost:{port}");
    let mut server = start(&["--statsd", &statsd, "--statsd-interval", "100ms"]);
    thread::sleep(Duration::from_millis(500));
    let mut c = Collector::bind(&format!("127.0.0.1:{port}"));
    load(&server, 1, 5);
    c.receive_until(
        Duration::from_secs(10),
        "requests after the collector came up",
        |c| c.sum("vrypt.requests") >= 5,
    );
    assert_eq!(c.sum("vrypt.requests"), 5);
    assert!(server.stop(Duration::from_secs(10)).success());
    assert!(statsd_warnings(&server.log_lines()).len() <= 2);
}

#[test]
fn statsd_off_serves_without_a_pusher() {
    let mut server = start(&["--statsd", "off"]);
    load(&server, 1, 3);
    assert!(server.stop(Duration::from_secs(10)).success());
    assert!(
        statsd_warnings(&server.log_lines()).is_empty(),
        "{:?}",
        server.log_lines()
    );
}
