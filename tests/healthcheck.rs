//! `vrypt-server healthcheck` against the real server, a closed port, a
//! server answering 500 and a server that never answers.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vrypt-server"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VRYPT_") || k == "PORT" {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on a free port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = bin()
            .args(["--listen", &listen, "--workers", "2", "--statsd", "off"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the listening line, keep draining stderr afterwards.
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let mut told = false;
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if !told && String::from_utf8_lossy(&seen).contains("event=listening") {
                    told = true;
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("vrypt-server did not log event=listening within 10 s");
        Server { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthcheck(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = bin().arg("healthcheck").args(args).output().unwrap();
    (out, t.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn healthy_server_exits_0_silently() {
    let server = Server::start(&[]);
    let (out, _) = healthcheck(&["--url", &server.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    let (out, _) = healthcheck(&[
        "--url",
        &format!("http://localhost:{}/some/path?q=1", server.port),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn redirect_counts_as_healthy() {
    let server = Server::start(&["--status", "301", "--header", "Location: /elsewhere"]);
    let (out, _) = healthcheck(&["--url", &server.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn server_answering_500_exits_1() {
    let server = Server::start(&["--status", "500"]);
    let (out, _) = healthcheck(&["--url", &server.url()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("500"), "{err}");
}

#[test]
fn closed_port_exits_1() {
    let port = free_port();
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
