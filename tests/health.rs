//! Health, readiness and metrics for every configured response: the admin listener
//! (`/healthz`, `/readyz`, `/metrics`), `--health-path` on the serving port,
//! `--shutdown-delay`, and `vrypt-server healthcheck` finding them, over real sockets.

mod common;

use common::{get, request, Client, Server};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

fn start(extra: &[&str]) -> Server {
    Server::start(&[&["--admin-listen", "127.0.0.1:0"][..], extra].concat())
}

fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = common::command()
        .arg("healthcheck")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample(text: &str, name: &str) -> u64 {
    common::prom_sample(text, name) as u64
}

#[test]
fn probes_are_healthy_for_a_404_backend_and_a_503_maintenance_page() {
    for status in ["404", "503"] {
        let server = start(&["--status", status, "--health-path", "/healthz"]);
        let admin = server.admin_addr();
        let main = server.addr;
        let code: u16 = status.parse().unwrap();
        assert_eq!(get(main, "/").status, code);
        assert_eq!(get(main, "/anything?x=1").status, code);
        let h = get(admin, "/healthz");
        assert_eq!((h.status, h.body_text().as_str()), (200, "ok\n"));
        assert_eq!(h.header("Connection"), Some("close"));
        assert_eq!(get(admin, "/readyz").status, 200);
        let hp = get(main, "/healthz?probe=1");
        assert_eq!((hp.status, hp.body_text().as_str()), (200, "ok\n"));
        assert_eq!(get(main, "/healthz/").status, code, "exact path only");
        assert_eq!(get(admin, "/nope").status, 404);
        assert_eq!(request(admin, "POST", "/healthz").status, 405);
        let head = request(admin, "HEAD", "/readyz");
        assert_eq!((head.status, head.body.len()), (200, 0));
        // The healthcheck subcommand, told where the admin listener is, exits 0.
        let (rc, err) = healthcheck(&["--admin-listen", &admin.to_string()], &[]);
        assert_eq!(rc, Some(0), "{err}");
        // Told only the serving port and the health path (as env), it exits 0 too.
        let (rc, err) = healthcheck(
            &[],
            &[
                ("VRYPT_LISTEN", &main.to_string()),
                ("VRYPT_HEALTH_PATH", "/healthz"),
            ],
        );
        assert_eq!(rc, Some(0), "{err}");
        // And without either, it checks / and sees the configured failure status.
        let (rc, err) = healthcheck(&["--listen", &main.to_string()], &[]);
        assert_eq!(rc, Some(1), "{err}");
        assert!(err.contains(status), "{err}");
    }
}

#[test]
fn the_health_path_keeps_pipelined_order_skips_bodies_and_answers_head() {
    let server = start(&["--status", "404", "--health-path", "/ping"]);
    let mut c = server.connect();
    c.send(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /ping HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          HEAD /ping HTTP/1.1\r\nHost: t\r\n\r\n\
          GET http://t/ping?x HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let statuses: Vec<u16> = [false, false, true, false, false]
        .iter()
        .map(|&is_head| c.response(is_head).status)
        .collect();
    assert_eq!(statuses, [404, 200, 200, 200, 404]);
}

#[test]
fn the_admin_listener_answers_while_max_connections_is_saturated() {
    let server = start(&["--max-connections", "2"]);
    let mut held: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for c in &mut held {
        c.send(GET);
        assert_eq!(c.response(false).status, 200);
    }
    // A third client is accepted by the kernel but not by the server.
    let mut third = server.connect();
    third.send(GET);
    third
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        third.try_response(false).is_none(),
        "a third connection was served"
    );
    let h = get(server.admin_addr(), "/healthz");
    assert_eq!(h.status, 200);
    let m = get(server.admin_addr(), "/metrics").body_text();
    assert_eq!(sample(&m, "vrypt_connections_open"), 2);
    // Once one closes, the third is served.
    drop(held.pop());
    third
        .stream
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .unwrap();
    assert_eq!(third.response(false).status, 200);
}

#[test]
fn metrics_count_the_serving_port_exactly_and_not_the_scrapes() {
    let server = start(&["--status", "503"]);
    let admin = server.admin_addr();
    let mut c = server.connect();
    let n = 250;
    c.send(&GET.repeat(n));
    for _ in 0..n {
        assert_eq!(c.response(false).status, 503);
    }
    let mut bad = server.connect();
    bad.send(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
    assert_eq!(bad.response(false).status, 400);
    drop(bad);
    for _ in 0..5 {
        assert_eq!(get(admin, "/metrics").status, 200);
    }
    let m = get(admin, "/metrics");
    assert_eq!(
        m.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = m.body_text();
    assert_eq!(sample(&text, "vrypt_requests_total"), n as u64, "{text}");
    assert_eq!(
        sample(&text, "vrypt_responses_total{class=\"5xx\"}"),
        n as u64
    );
    assert_eq!(sample(&text, "vrypt_responses_total{class=\"4xx\"}"), 1);
    assert_eq!(sample(&text, "vrypt_parse_errors_total"), 1);
    assert_eq!(sample(&text, "vrypt_connections_accepted_total"), 2);
    assert_eq!(sample(&text, "vrypt_ready"), 1);
    assert!(text.contains("# TYPE vrypt_requests_total counter\n"));
    assert!(text.contains(&format!(
        "vrypt_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
}

#[test]
fn admin_requests_are_bounded_and_malformed_ones_refused() {
    let server = start(&["--header-timeout", "300ms"]);
    let admin = server.admin_addr();
    // A head beyond the admin limit: 431, then close.
    let mut big = Client::connect(admin);
    let filler = "a".repeat(9000);
    big.send(format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX: {filler}\r\n\r\n").as_bytes());
    assert_eq!(big.response(false).status, 431);
    // Garbage: 400.
    let mut junk = Client::connect(admin);
    junk.send(b"\x01\x02 nonsense\r\n\r\n");
    assert_eq!(junk.response(false).status, 400);
    // A client that never finishes its head is closed by the header deadline.
    let mut slow = Client::connect(admin);
    slow.send(b"GET /healthz HTTP/1.1\r\n");
    let t = Instant::now();
    assert!(slow.closed(), "an unfinished admin head was not closed");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Many idle admin connections do not stop the admin listener for long: the ones
    // over the per-worker cap wait in the queue until the header deadline frees room.
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(admin).unwrap())
        .collect();
    let t = Instant::now();
    assert_eq!(get(admin, "/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    drop(idle);
    // The serving port is unaffected throughout.
    assert_eq!(get(server.addr, "/").status, 200);
}

#[test]
fn shutdown_delay_keeps_serving_while_not_ready_then_drains() {
    let mut server = start(&[
        "--shutdown-delay",
        "2s",
        "--health-path",
        "/healthz",
        "--status",
        "404",
    ]);
    let admin = server.admin_addr();
    let main = server.addr;
    let mut early = server.connect();
    early.send(GET);
    assert_eq!(early.response(false).status, 404);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let deadline = signalled + Duration::from_millis(1700);
    let mut served = 0;
    while Instant::now() < deadline {
        // New connections are still accepted and answered during the delay.
        assert_eq!(get(main, "/").status, 404);
        if signalled.elapsed() > Duration::from_millis(200) {
            assert_eq!(get(admin, "/readyz").status, 503);
            assert_eq!(get(main, "/healthz").status, 503);
            assert_eq!(
                get(admin, "/healthz").status,
                200,
                "alive while shutting down"
            );
        }
        // A keep-alive connection from before the signal is served too.
        early.send(GET);
        assert_eq!(early.response(false).status, 404);
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 10, "{served}");
    server.assert_exits_cleanly(Duration::from_secs(5));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the delay"
    );
    let log = server.log_text();
    let pos = |e: &str| {
        log.find(e)
            .unwrap_or_else(|| panic!("no {e} in the log:\n{log}"))
    };
    assert!(pos("event=shutdown_started") < pos("event=shutdown_delay delay_ms=2000"));
    assert!(pos("event=shutdown_delay ") < pos("event=shutdown_draining"));
    assert!(pos("event=shutdown_draining") < pos("event=shutdown_complete"));
    assert!(
        TcpStream::connect(main).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn a_second_signal_during_the_delay_exits_at_once() {
    let mut server = start(&["--shutdown-delay", "30s"]);
    server.signal(libc::SIGTERM);
    server.wait_for_log("event=shutdown_delay", Duration::from_secs(5));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    assert!(server.log_text().contains("event=shutdown_forced"));
}

#[test]
fn healthcheck_uses_the_listen_host_over_ipv6() {
    let listen = match TcpListener::bind("[::1]:0") {
        Ok(l) => l.local_addr().unwrap().to_string(),
        Err(_) => {
            // No IPv6 loopback here: the check must still go to [::1], and fail saying so.
            let (rc, err) = healthcheck(&[], &[("VRYPT_LISTEN", "[::1]:9")]);
            assert_eq!(rc, Some(1), "{err}");
            assert!(err.contains("http://[::1]:9/"), "{err}");
            return;
        }
    };
    let server = Server::start_with(common::command().args([
        "--listen",
        &listen,
        "--workers",
        "1",
        "--statsd",
        "off",
    ]));
    assert_eq!(server.addr, listen.parse::<SocketAddr>().unwrap());
    let (rc, err) = healthcheck(&[], &[("VRYPT_LISTEN", &listen)]);
    assert_eq!(rc, Some(0), "{err}");
}

#[test]
fn idle_admin_sockets_cannot_keep_a_probe_out() {
    // The default header timeout (10 s): 65 sockets that send one byte each fill the
    // worker's 64 admin slots; the probe that arrives next evicts the oldest.
    let server = start(&[]);
    let admin = server.admin_addr();
    let idle: Vec<TcpStream> = (0..65)
        .map(|_| {
            let mut s = TcpStream::connect(admin).unwrap();
            std::io::Write::write_all(&mut s, b"G").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(get(admin, "/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(idle);
}

#[test]
fn while_draining_readiness_and_the_health_path_say_503_and_liveness_200() {
    let mut server = start(&["--health-path", "/healthz", "--shutdown-timeout", "5s"]);
    let admin = server.admin_addr();
    // A request whose body is still coming keeps the drain going.
    let mut upload = server.connect();
    upload.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let mut keep = server.connect();
    keep.send(GET);
    assert_eq!(keep.response(false).status, 200);
    // A health probe that is in the socket when the drain starts is answered after
    // it: 503 (HEAD, so no body), and the connection closes.
    server.signal(libc::SIGSTOP);
    server.wait_stopped(Duration::from_secs(5));
    keep.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(50));
    server.signal(libc::SIGTERM);
    server.signal(libc::SIGCONT);
    let r = keep.response(true);
    assert_eq!((r.status, r.body.len()), (503, 0));
    assert_eq!(r.header("Connection"), Some("close"));
    server.wait_for_log("event=shutdown_draining", Duration::from_secs(5));
    assert_eq!(get(admin, "/readyz").status, 503);
    assert_eq!(get(admin, "/healthz").status, 200);
    // New connections to the serving port are refused while the drain goes on.
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "the serving port still accepts during the drain"
    );
    upload.send(b"defghij");
    assert_eq!(upload.response(false).status, 200);
    drop(upload);
    drop(keep);
    server.assert_exits_cleanly(Duration::from_secs(5));
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let mut server = start(&["--shutdown-delay", "200ms", "--shutdown-timeout", "30s"]);
    let mut upload = server.connect();
    upload.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    server.signal(libc::SIGTERM);
    server.wait_for_log("event=shutdown_draining", Duration::from_secs(5));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
}
