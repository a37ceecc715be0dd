//! `vrypt-server healthcheck` against the real server, a closed port, a
//! server answering 500 and a server that never answers.

mod common;

use common::Server;
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A server on a kernel-chosen 127.0.0.1 port with two workers, killed on drop.
fn start(extra: &[&str]) -> Server {
    Server::start_with(
        common::command()
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .args(["--statsd", "off"])
            .args(extra),
    )
}

fn url(server: &Server) -> String {
    format!("http://127.0.0.1:{}/", server.port())
}

fn healthcheck(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = common::command()
        .arg("healthcheck")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn healthy_server_exits_0_silently() {
    let server = start(&[]);
    let (out, _) = healthcheck(&["--url", &url(&server)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    let (out, _) = healthcheck(&[
        "--url",
        &format!("http://localhost:{}/some/path?q=1", server.port()),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn redirect_counts_as_healthy() {
    let server = start(&["--status", "301", "--header", "Location: /elsewhere"]);
    let (out, _) = healthcheck(&["--url", &url(&server)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn server_answering_500_exits_1() {
    let server = start(&["--status", "500"]);
    let (out, _) = healthcheck(&["--url", &url(&server)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("500"), "{err}");
}

#[test]
fn closed_port_exits_1() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (out, took) = healthcheck(&[
        "--url",
        &format!("http://127.0.0.1:{port}/"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn silent_server_exits_1_within_the_timeout() {
    // The kernel completes the handshake (backlog) but nobody ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (out, took) = healthcheck(&["--url", &url, "--timeout", "500ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn bad_url_exits_1() {
    for url in ["https://127.0.0.1/", "127.0.0.1:8080", "http://[::1/"] {
        let (out, _) = healthcheck(&["--url", url]);
        assert_eq!(out.status.code(), Some(1), "{url}");
        assert!(!out.stderr.is_empty(), "{url}");
    }
}
