//! Behaviour shaped on purpose for load tests, over real sockets: `--status-mix`
//! proportions, `--fault` kinds as a client sees them, `--seed` reproducibility,
//! and probes that are never shaped.

mod common;

use common::{get, Client, Server};
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

/// Statuses of `n` pipelined GETs on one connection, in order.
fn statuses(server: &Server, n: usize) -> Vec<u16> {
    let mut c = server.connect();
    let mut out = Vec::with_capacity(n);
    let batch = 500;
    while out.len() < n {
        let k = batch.min(n - out.len());
        c.send(&GET.repeat(k));
        for _ in 0..k {
            out.push(c.response(false).status);
        }
    }
    out
}

fn sample(text: &str, name: &str) -> u64 {
    common::prom_sample(text, name) as u64
}

#[test]
fn status_mix_follows_the_weights_over_20000_requests() {
    let server = Server::start(&[
        "--status-mix",
        "200=70,503=20,500=7.5,404=2.5",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let n = 20_000;
    let got = statuses(&server, n);
    let metrics = get(server.admin_addr(), "/metrics").body_text();
    for (status, weight) in [(200, 70.0), (503, 20.0), (500, 7.5), (404, 2.5)] {
        let count = got.iter().filter(|&&s| s == status).count();
        let share = 100.0 * count as f64 / n as f64;
        assert!(
            (share - weight).abs() <= 1.5,
            "status {status}: {share:.2}% of {n}, weight {weight}%"
        );
        let label = format!("vrypt_mixed_responses_total{{status=\"{status}\"}}");
        assert_eq!(sample(&metrics, &label), count as u64, "{label}");
    }
    assert_eq!(
        got.iter()
            .filter(|s| ![200, 503, 500, 404].contains(s))
            .count(),
        0
    );
    // The body stays the configured one whatever the status.
    let mut c = server.connect();
    c.send(GET);
    assert_eq!(c.response(false).body_text(), "Vrypt");
}

#[test]
fn the_same_seed_gives_the_same_sequence() {
    let run = |seed: &str| {
        let server = Server::start(&["--status-mix", "200=50,503=50", "--seed", seed]);
        statuses(&server, 200)
    };
    let a = run("12345");
    assert_eq!(a, run("12345"), "same seed, same statuses");
    assert_ne!(a, run("54321"), "another seed, other statuses");
    let server = Server::start(&["--status-mix", "200=1", "--seed", "9"]);
    assert!(
        server.log_text().contains(" seed=9 "),
        "{}",
        server.log_text()
    );
    let unseeded = Server::start(&[]);
    assert!(
        unseeded.log_text().contains(" seed="),
        "the clock seed is logged"
    );
}

/// Reads until EOF or an error; the bytes read and the error kind.
fn read_all(c: &mut Client) -> (Vec<u8>, Option<ErrorKind>) {
    let mut out = c.buffered().to_vec();
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e.kind())),
        }
    }
}

#[test]
fn a_reset_fault_is_seen_as_econnreset() {
    let server = Server::start(&["--fault", "reset=100%", "--admin-listen", "127.0.0.1:0"]);
    let mut c = server.connect();
    c.send(GET);
    let (bytes, err) = read_all(&mut c);
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(err, Some(ErrorKind::ConnectionReset));
    let m = get(server.admin_addr(), "/metrics").body_text();
    assert_eq!(sample(&m, "vrypt_faults_total{kind=\"reset\"}"), 1);
    assert_eq!(sample(&m, "vrypt_requests_total"), 1);
}

#[test]
fn a_close_fault_is_eof_without_a_response() {
    let server = Server::start(&["--fault", "close=100%"]);
    let mut c = server.connect();
    c.send(GET);
    let (bytes, err) = read_all(&mut c);
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(err, None, "a clean close (FIN), not a reset");
}

#[test]
fn a_stall_fault_is_silence_until_the_idle_timeout() {
    let server = Server::start(&["--fault", "stall=100%", "--idle-timeout", "700ms"]);
    let mut c = server.connect();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    c.send(GET);
    let (bytes, _) = read_all(&mut c);
    let took = t.elapsed();
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[test]
fn faults_end_a_pipeline_after_the_answers_before_them() {
    // With a 50% close fault, a pipeline gets its answers up to the first fault, in
    // order, then a clean close; the metrics count what happened.
    let server = Server::start(&[
        "--fault",
        "close=50%",
        "--seed",
        "7",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let mut answered = 0u64;
    let mut faults = 0u64;
    for _ in 0..50 {
        let mut c = server.connect();
        c.send(&GET.repeat(10));
        let mut got = 0;
        while let Some(r) = c.try_response(false) {
            assert_eq!(r.status, 200);
            got += 1;
        }
        assert!(got <= 10);
        answered += got;
        if got < 10 {
            faults += 1;
        }
    }
    let m = get(server.admin_addr(), "/metrics").body_text();
    assert_eq!(sample(&m, "vrypt_responses_total{class=\"2xx\"}"), answered);
    assert_eq!(sample(&m, "vrypt_faults_total{kind=\"close\"}"), faults);
    assert!(faults > 30, "{faults} of 50 pipelines faulted");
}

#[test]
fn probes_are_never_mixed_or_faulted() {
    let server = Server::start(&[
        "--fault",
        "reset=100%",
        "--status-mix",
        "503=1",
        "--health-path",
        "/healthz",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    for _ in 0..20 {
        let h = get(server.addr, "/healthz");
        assert_eq!((h.status, h.body_text().as_str()), (200, "ok\n"));
        assert_eq!(get(server.admin_addr(), "/healthz").status, 200);
    }
}

#[test]
fn bad_specs_are_one_line_and_exit_2() {
    for args in [
        &["--status-mix", "200=1,700=1"][..],
        &["--status-mix", "nonsense"],
        &["--fault", "explode=1%"],
        &["--fault", "reset=70%,close=40%"],
        &["--seed", "-1"],
        &["--delay", "soon"],
        &["--delay", "percentiles:p90=1s,p50=2s"],
        &["--body-size", "2GiB"],
        &["--body-size", "lots"],
    ] {
        let out = common::command().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn templates_name_the_host_and_the_worker_that_answered() {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let server = Server::start_with(
        common::local_command("2")
            .args(["--header", "X-Served-By: {hostname}/{worker}"])
            .args(["--header", "X-Zone: {env:VRYPT_TEST_ZONE}"])
            .args(["--body", "v={version} w={worker} {{literal}} {\"json\":1}"])
            .env("VRYPT_TEST_ZONE", "eu-west-1"),
    );
    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let r = get(server.addr, "/");
        let served_by = r.header("X-Served-By").unwrap().to_string();
        let (host, worker) = served_by.rsplit_once('/').unwrap();
        assert_eq!(host, hostname);
        assert_eq!(r.header("X-Zone"), Some("eu-west-1"));
        assert_eq!(
            r.body_text(),
            format!(
                "v={} w={worker} {{literal}} {{\"json\":1}}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            r.header("Content-Length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );
        workers.insert(worker.to_string());
    }
    assert_eq!(
        workers.into_iter().collect::<Vec<_>>(),
        ["0", "1"],
        "both workers answered, each with its own index"
    );
    // An unset variable is an error at start, not an empty header.
    let out = common::command()
        .args(["--header", "X: {env:VRYPT_TEST_UNSET_VARIABLE}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VRYPT_TEST_UNSET_VARIABLE is not set"));
}

#[test]
fn a_256_mib_body_size_reaches_8_clients_intact_with_one_copy_in_memory() {
    const SIZE: usize = 256 << 20;
    let small = Server::start(&["--workers", "2"]);
    let baseline_kib = small.rss_kib();
    drop(small);
    let server = Server::start(&[
        "--workers",
        "2",
        "--body-size",
        "256MiB",
        "--body",
        "0123456789abcdef!",
    ]);
    let unit = b"0123456789abcdef!";
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|k| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    c.stream.read_exact(&mut byte).unwrap();
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                assert!(
                    head.contains(&format!("Content-Length: {SIZE}\r\n")),
                    "{head}"
                );
                let mut buf = vec![0u8; 1 << 20];
                let mut at = 0usize;
                loop {
                    let n = c.stream.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    for (i, &b) in buf[..n].iter().enumerate() {
                        assert_eq!(
                            b,
                            unit[(at + i) % unit.len()],
                            "client {k}, byte {}",
                            at + i
                        );
                    }
                    at += n;
                }
                at
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), SIZE);
    }
    let peak_kib = common::proc_status_kib(server.pid(), "VmHWM:");
    let limit_kib = baseline_kib + (SIZE as u64 >> 10) + 16 * 1024;
    assert!(
        peak_kib < limit_kib,
        "peak RSS {peak_kib} KiB, limit {limit_kib} KiB (baseline {baseline_kib} KiB)"
    );
}

/// A seed whose first request is answered and whose second draws the fault, with a
/// single fault kind at 50% and nothing else random.
fn seed_answer_then_fault() -> String {
    (1u64..)
        .find(|&s| {
            let d = vrypt_server::testing::worker_draws(s, 0, 2);
            d[0] >= 0.5 && d[1] < 0.5
        })
        .unwrap()
        .to_string()
}

#[test]
fn a_stall_on_a_keep_alive_connection_lasts_the_whole_idle_timeout() {
    let seed = seed_answer_then_fault();
    let server = Server::start(&[
        "--fault",
        "stall=50%",
        "--seed",
        &seed,
        "--idle-timeout",
        "1500ms",
    ]);
    let mut c = server.connect();
    c.send(GET);
    assert_eq!(c.response(false).status, 200);
    std::thread::sleep(Duration::from_millis(1000));
    let t = Instant::now();
    c.send(GET);
    let (bytes, _) = read_all(&mut c);
    let took = t.elapsed();
    assert!(bytes.is_empty());
    assert!(
        took >= Duration::from_millis(1300),
        "the stall lasted {took:?}"
    );
}

#[test]
fn sigterm_closes_a_stalled_connection_after_delivering_what_it_owes() {
    let seed = seed_answer_then_fault();
    let mut server = Server::start(&[
        "--fault",
        "stall=50%",
        "--seed",
        &seed,
        "--delay",
        "3s",
        "--shutdown-timeout",
        "6s",
    ]);
    let mut c = server.connect();
    c.send(&GET.repeat(2));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(c.response(false).status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(c);
    server.assert_exits_cleanly(Duration::from_secs(3));
}

#[test]
fn json_and_binary_bodies_are_not_templates() {
    for body in [r#"{"a":{"b":1}}"#, "a }} b {{ c"] {
        let server = Server::start(&["--body", body]);
        assert_eq!(get(server.addr, "/").body_text(), body);
    }
    let server = Server::start(&["--body", r#"{"host":"{hostname}","m":{"a":1}}"#]);
    let got = get(server.addr, "/").body_text();
    assert!(
        got.ends_with(r#","m":{"a":1}}"#) && !got.contains("{hostname}"),
        "{got}"
    );
    // A binary file with braces and a placeholder-looking run is sent as it is.
    let mut bin = vec![0xffu8, 0xfe, b'{', b'{'];
    bin.extend_from_slice(b"{worker}}}");
    bin.push(0x80);
    let path = std::env::temp_dir().join(format!("vrypt-bin-{}", std::process::id()));
    std::fs::write(&path, &bin).unwrap();
    let server = Server::start(&["--body-file", path.to_str().unwrap()]);
    assert_eq!(get(server.addr, "/").body, bin);
    std::fs::remove_file(&path).unwrap();
}
