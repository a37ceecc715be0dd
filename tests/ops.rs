//! Operational behaviour over real sockets: timeouts, backpressure, descriptor
//! exhaustion, connection limits, graceful shutdown and the command line.

mod common;

use common::{command, Client, Server, GET};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn slowloris_gets_408_and_close() {
    let s = Server::start(&["--header-timeout", "300ms"]);
    let mut c = s.connect();
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    // Keep trickling header bytes: the deadline runs from the first byte, not the last.
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(100));
        let _ = c.stream.write_all(b"X-A: b\r\n");
    }
    let r = c.response(false);
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn silent_new_connection_is_closed_without_response() {
    let s = Server::start(&["--header-timeout", "200ms"]);
    let mut c = s.connect();
    assert!(c.closed(), "expected a plain close");
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let s = Server::start(&["--idle-timeout", "300ms", "--header-timeout", "5s"]);
    let mut c = s.connect();
    c.send(GET);
    assert_eq!(c.response(false).status, 200);
    let t = Instant::now();
    assert!(c.closed());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // Activity resets the idle timer.
    let mut c = s.connect();
    for _ in 0..4 {
        c.send(GET);
        assert_eq!(c.response(false).status, 200);
        thread::sleep(Duration::from_millis(150));
    }
}

/// A client that pipelines without reading: the server must stop reading from it,
/// keep its memory bounded, and close it after the write timeout.
#[test]
fn backpressure_bounds_memory_and_write_timeout_closes() {
    let s = Server::start(&["--write-timeout", "1s"]);
    let rss_before = s.rss_kib();
    let stream = TcpStream::connect(s.addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Small buffers on our side so the backlog shows up at the server quickly.
    let batch: Vec<u8> = GET.repeat(1000);
    let mut writer = stream.try_clone().unwrap();
    let sent = thread::spawn(move || {
        let mut sent = 0usize;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && sent < 2000 * batch.len() {
            match writer.write(&batch) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    })
    .join()
    .unwrap();
    let requests_sent = sent / GET.len();
    // Everything sent would be ~130 bytes of response per 31 bytes of request.
    assert!(
        requests_sent < 2000 * 1000,
        "the server kept reading: {requests_sent} requests accepted"
    );
    let rss_after = s.rss_kib();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "server memory grew from {rss_before} KiB to {rss_after} KiB for one client"
    );
    // The client never reads: the write timeout closes the connection.
    let mut reader = stream;
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let t = Instant::now();
    let mut got = 0usize;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => break,
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "connection never closed"
        );
    }
    assert!(got > 0, "no response at all");
    // The same server still serves others.
    let mut c = s.connect();
    c.send(GET);
    assert_eq!(c.response(false).status, 200);
}

fn with_nofile(cmd: &mut std::process::Command, n: u64) -> &mut std::process::Command {
    // SAFETY: setrlimit is async-signal-safe and touches only the child being spawned.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn descriptor_exhaustion_neither_spins_nor_stops_accepting() {
    let mut cmd = common::local_command("1");
    cmd.args(["--idle-timeout", "30s"]);
    let s = Server::start_with(with_nofile(&mut cmd, 32));
    // Hold more connections than the server has descriptors.
    let mut held = Vec::new();
    for _ in 0..60 {
        match TcpStream::connect(s.addr) {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    thread::sleep(Duration::from_millis(300));
    let ticks_before = s.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let ticks = s.cpu_ticks() - ticks_before;
    // 100 ticks per second is one full core; a spinning accept loop would use ~all of it.
    assert!(
        ticks < 20,
        "server used {ticks} ticks of CPU in 1 s while out of descriptors"
    );
    drop(held);
    // Descriptors free again: new clients are served.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = s.connect();
        c.send(GET);
        if let Some(r) = c.try_response(false) {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not recover after descriptors were freed"
        );
    }
    assert!(
        s.log_text().contains("event=accept_failed"),
        "{}",
        s.log_text()
    );
}

#[test]
fn max_connections_caps_open_connections() {
    let s = Server::start(&["--max-connections", "3"]);
    let (mut open, mut fourth) = one_past_the_limit(&s, 3);
    drop(open.pop());
    assert_eq!(fourth.response(false).status, 200);
}

/// Opens `max` served connections, then one more that connects (the kernel's
/// backlog) and sends a request that is not answered while the others are open.
/// Returns them all, the last with a 5 s read timeout again.
fn one_past_the_limit(s: &Server, max: usize) -> (Vec<Client>, Client) {
    let mut open: Vec<Client> = (0..max).map(|_| s.connect()).collect();
    for c in open.iter_mut() {
        c.send(GET);
        assert_eq!(c.response(false).status, 200);
    }
    let mut extra = s.connect();
    extra
        .stream
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    extra.send(GET);
    assert!(
        extra.try_response(false).is_none(),
        "served beyond --max-connections {max}"
    );
    extra
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (open, extra)
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = Server::start(&["--shutdown-timeout", "5s"]);
    // Clients in the middle of requests: partial head, partial body, and one idle.
    let mut partial_head = s.connect();
    partial_head.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    let mut partial_body = s.connect();
    partial_body.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc");
    let mut idle = s.connect();
    idle.send(GET);
    assert_eq!(idle.response(false).status, 200);
    thread::sleep(Duration::from_millis(100));

    s.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    // Stops accepting at once.
    let refused = match TcpStream::connect_timeout(&s.addr, Duration::from_millis(500)) {
        Err(_) => true,
        Ok(mut c) => {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = c.write_all(GET);
            let mut b = [0u8; 1];
            !matches!(c.read(&mut b), Ok(n) if n > 0)
        }
    };
    assert!(refused, "a new connection was served after SIGTERM");
    // The idle connection is closed; the busy ones are answered with Connection: close.
    assert!(idle.closed());
    partial_head.send(b"\r\n");
    let r = partial_head.response(false);
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    assert!(partial_head.closed());
    partial_body.send(b"def");
    let r = partial_body.response(false);
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    let status = s.wait_exit(Duration::from_secs(5)).expect("server exited");
    assert_eq!(status.code(), Some(0), "{}", s.log_text());
    let log = s.log_text();
    // Each phase once per process (draining once per worker), in this order.
    let mut from = 0;
    for phase in [
        "event=shutdown_started signal=SIGTERM",
        "event=shutdown_draining",
        "event=shutdown_complete",
    ] {
        let at = log[from..]
            .find(phase)
            .unwrap_or_else(|| panic!("no '{phase}' line after byte {from} of: {log}"));
        from += at + phase.len();
    }
}

#[test]
fn busy_keep_alive_clients_lose_no_response_at_sigterm() {
    let mut s = Server::start_with(common::local_command("2").args(["--shutdown-timeout", "5s"]));
    let addr = s.addr;
    // Each client keeps a request in flight at all times: it sends the next request's
    // head in two parts, so at any moment the server holds a partial request.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut answered = 0;
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if c.stream.write_all(b"GET / HTTP/1.1\r\nHo").is_err() {
                        // Closed while idle between requests: nothing was in flight.
                        return (answered, true);
                    }
                    thread::sleep(Duration::from_millis(20));
                    // The server has this request's first bytes: it owes an answer now.
                    if c.stream.write_all(b"st: t\r\n\r\n").is_err() {
                        return (answered, true);
                    }
                    match c.try_response(false) {
                        Some(r) => {
                            assert_eq!(r.status, 200);
                            answered += 1;
                            if r.header("Connection") == Some("close") {
                                return (answered, c.closed());
                            }
                        }
                        None => return (answered, false),
                    }
                }
                (answered, false)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    for h in clients {
        let (answered, clean) = h.join().unwrap();
        assert!(answered > 0);
        assert!(clean, "a client lost a response after {answered} answers");
    }
    s.assert_exits_cleanly(Duration::from_secs(6));
}

#[test]
fn shutdown_timeout_and_second_signal() {
    let mut s = Server::start(&["--shutdown-timeout", "500ms"]);
    let mut stuck = s.connect();
    stuck.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(5))
        .expect("exit after the shutdown timeout");
    assert_eq!(st.code(), Some(0));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );

    let mut s = Server::start(&["--shutdown-timeout", "30s"]);
    let mut stuck = s.connect();
    stuck.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    thread::sleep(Duration::from_millis(100));
    s.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    assert!(
        s.wait_exit(Duration::from_millis(10)).is_none(),
        "exited before the second signal"
    );
    s.signal(libc::SIGINT);
    let st = s
        .wait_exit(Duration::from_secs(2))
        .expect("a second signal exits at once");
    assert_eq!(st.code(), Some(1));
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run binary")
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    for (args, env) in [
        (&["--workers", "many"][..], &[][..]),
        (&["--no-such-flag"], &[]),
        (&["--status", "1000"], &[]),
        (&["--header", "X-Evil: a\rb"], &[]),
        (&["--listen", "localhost"], &[]),
        (&["--header-timeout", "soon"], &[]),
        (&["70000"], &[]),
        (&[], &[("VRYPT_IDLE_TIMEOUT", "forever")]),
        (&["--body-file", "/nonexistent/body"], &[]),
    ] {
        let out = run_cli(args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("vrypt-server: error: "), "{err}");
    }
}

#[test]
fn help_and_version() {
    let out = run_cli(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vrypt-server {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run_cli(&["--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for flag in [
        "--listen",
        "--workers",
        "--max-header-bytes",
        "--statsd",
        "VRYPT_BODY",
        "healthcheck",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run_cli(
        &["--listen", &format!("127.0.0.1:{port}"), "--statsd", "off"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Address already in use") && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn second_instance_on_same_port_is_refused() {
    // SO_REUSEPORT must not let a second server silently share the port.
    let s = Server::start(&[]);
    let out = run_cli(&["--listen", &s.addr.to_string(), "--statsd", "off"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn environment_configures_and_flags_win() {
    let mut cmd = command();
    cmd.args(["--workers", "1", "--statsd", "off", "--body", "from-flag"])
        .env("VRYPT_LISTEN", "127.0.0.1:0")
        .env("VRYPT_BODY", "from-env")
        .env("VRYPT_CONTENT_TYPE", "text/html")
        .env("VRYPT_HEADER", "X-One: 1\nX-Two: 2");
    let s = Server::start_with(&mut cmd);
    let mut c = s.connect();
    c.send(GET);
    let r = c.response(false);
    assert_eq!(r.body, b"from-flag");
    assert_eq!(r.header("Content-Type"), Some("text/html"));
    assert_eq!(
        (r.header("X-One"), r.header("X-Two")),
        (Some("1"), Some("2"))
    );
}

#[test]
fn bare_port_argument_and_port_env() {
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Server::start_with(command().args([
        &free.to_string(),
        "--workers",
        "1",
        "--statsd",
        "off",
    ]));
    assert_eq!(s.port(), free);
    drop(s);
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Server::start_with(
        command()
            .args(["--workers", "1", "--statsd", "off"])
            .env("PORT", free.to_string()),
    );
    let mut c = Client::connect(SocketAddr::from(([127, 0, 0, 1], free)));
    c.send(GET);
    assert_eq!(c.response(false).status, 200);
    assert_eq!(s.port(), free);
}

/// At `--max-connections`, a connection waiting in the kernel's accept queue when
/// SIGTERM arrives was promised an answer by the kernel: the drain accepts it past
/// the limit and answers it, rather than resetting it by closing the listener.
#[test]
fn shutdown_at_max_connections_answers_the_queued_connection() {
    let mut s = Server::start_with(common::local_command("1").args([
        "--max-connections",
        "2",
        "--shutdown-timeout",
        "5s",
    ]));
    let (mut open, mut queued) = one_past_the_limit(&s, 2);
    s.signal(libc::SIGTERM);
    let r = match queued.next_response(false) {
        common::Next::Response(r) => r,
        other => panic!("the queued connection at SIGTERM: {other:?}"),
    };
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    assert!(queued.closed());
    for c in open.iter_mut() {
        assert!(c.closed(), "an idle connection was left open by the drain");
    }
    // The clients close too (the server lingers until they do).
    drop((queued, open));
    s.assert_exits_cleanly(Duration::from_secs(3));
}

/// An empty line after the last request is not a request in flight: the drain
/// closes that connection at once instead of waiting for the shutdown timeout.
#[test]
fn shutdown_does_not_wait_for_a_connection_that_sent_only_an_empty_line() {
    let mut s = Server::start(&["--shutdown-timeout", "5s"]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    let mut late = s.connect();
    late.send(GET);
    assert_eq!(late.response(false).status, 200);
    late.send(b"\r\n");
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    assert!(c.closed() && late.closed());
    s.assert_exits_cleanly(Duration::from_secs(5));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the drain took {:?}: it waited for a request that was never begun",
        t.elapsed()
    );
}
