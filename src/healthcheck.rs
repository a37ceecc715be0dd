//! `vrypt-server healthcheck`: a tiny blocking HTTP/1.1 client for container
//! health checks in images that have no shell and no curl.
//!
//! It sends one `GET` and looks only at the status line: a 2xx or 3xx answer
//! within the timeout is healthy (exit 0); anything else (no connection, a
//! timeout, a malformed answer, a 4xx or 5xx status) is unhealthy (exit 1) and
//! prints one line to stderr. A healthy check prints nothing.
//!
//! The timeout bounds the whole check: name resolution, connecting, sending and
//! reading the status line all share one deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest status line accepted, in bytes.
const MAX_STATUS_LINE: usize = 1024;

/// Checks `url` and returns the process exit code: 0 when healthy, else 1.
pub(crate) fn run(url: &str, timeout: Duration) -> i32 {
    match check(url, timeout) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("healthcheck: {url}: {e}");
            1
        }
    }
}

/// Fetches `url` and returns its status code when it is 2xx or 3xx.
pub(crate) fn check(url: &str, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let target = Url::parse(url)?;
    let addrs = resolve(&target.host, target.port, deadline)?;
    let mut stream = connect(&addrs, deadline)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: vrypt-healthcheck\r\n\r\n",
        target.path, target.host_header
    );
    set_deadline(&stream, deadline)?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io_error("sending the request", &e))?;
    let line = read_status_line(&mut stream, deadline)?;
    let status = parse_status_line(&line)?;
    if (200..400).contains(&status) {
        Ok(status)
    } else {
        Err(format!("unhealthy status {status}"))
    }
}

/// The parts of an `http://` URL this client needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Url {
    /// Host to connect to, without brackets (`127.0.0.1`, `::1`, `localhost`).
    pub(crate) host: String,
    /// Port to connect to; 80 when the URL has none.
    pub(crate) port: u16,
    /// Request target: path and query, `/` when the URL has none.
    pub(crate) path: String,
    /// Value of the `Host` header: the authority as written (brackets kept,
    /// port only when the URL gives one).
    pub(crate) host_header: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query]`; `host` may be a name, an IPv4
    /// address or `[IPv6]`. A fragment is dropped. `https`, user info and
    /// anything else are refused with a message saying why.
    pub(crate) fn parse(url: &str) -> Result<Url, String> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme {scheme:?}: only http:// is supported"
                ))
            }
            None => return Err("expected a URL like http://127.0.0.1:8080/".to_string()),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path contains spaces or control characters".to_string());
        }
        if authority.contains('@') {
            return Err("user info in the URL is not supported".to_string());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or("missing ] after an IPv6 address")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("invalid IPv6 address {addr:?}"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("unexpected text after ]")?),
            };
            (addr, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".to_string());
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("invalid port {p:?}")),
            },
        };
        Ok(Url {
            host: host.to_string(),
            port,
            path,
            host_header: authority.to_string(),
        })
    }
}

/// Resolves `host` without outliving the deadline: a literal address needs no
/// lookup, a name is looked up on a helper thread that is abandoned when the
/// deadline passes (the process exits right after).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    thread::Builder::new()
        .name("healthcheck-resolve".to_string())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|e| io_error("starting the resolver", &e))?;
    match rx.recv_timeout(remaining(deadline)?) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("{host} has no addresses")),
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!("timed out resolving {host}")),
    }
}

/// Connects to the first address that accepts, sharing the deadline.
fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, remaining(deadline)?) {
            Ok(s) => return Ok(s),
            Err(e) => last = io_error(&format!("connecting to {addr}"), &e),
        }
    }
    Err(last)
}

/// Reads up to the end of the status line (or the end of the stream).
fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> Result<String, String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err("the status line is too long".to_string());
        }
        set_deadline(stream, deadline)?;
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => {
                return Err("the server closed the connection without answering".to_string())
            }
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading the response", &e)),
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| "the status line is not text".to_string())
}

/// Parses `HTTP/1.x SSS reason` and returns `SSS`.
pub(crate) fn parse_status_line(line: &str) -> Result<u16, String> {
    let bad = || {
        format!(
            "not an HTTP status line: {:?}",
            line.chars().take(80).collect::<String>()
        )
    };
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(bad)
}

/// Time left before `deadline`, or an error when it has passed.
fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timed out".to_string())
    } else {
        Ok(left)
    }
}

fn set_deadline(stream: &TcpStream, deadline: Instant) -> Result<(), String> {
    let left = remaining(deadline)?;
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| io_error("setting a timeout", &e))?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| io_error("setting a timeout", &e))
}

fn io_error(what: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("timed out {what}"),
        _ => format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            url("http://127.0.0.1:8080/"),
            Url {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/".into(),
                host_header: "127.0.0.1:8080".into()
            }
        );
        assert_eq!(
            url("http://localhost"),
            Url {
                host: "localhost".into(),
                port: 80,
                path: "/".into(),
                host_header: "localhost".into()
            }
        );
        assert_eq!(
            url("HTTP://[::1]:9000/healthz?full=1#frag"),
            Url {
                host: "::1".into(),
                port: 9000,
                path: "/healthz?full=1".into(),
                host_header: "[::1]:9000".into()
            }
        );
        assert_eq!(url("http://[fe80::1]/").port, 80);
        assert_eq!(url("http://example.com?x").path, "/?x");
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:8080",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://u:p@h/",
            "http://[::1/",
            "http://[nope]:1/",
            "http://[::1]x/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(parse_status_line("HTTP/1.0 302 Found"), Ok(302));
        assert_eq!(parse_status_line("HTTP/1.1 503"), Ok(503));
        for bad in [
            "",
            "HTTP/2 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 abc",
            "SSH-2.0-OpenSSH",
            "HTTP/1.1 099 x",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad}");
        }
    }

    /// Serves one connection with `answer` and returns the URL and the request it got.
    fn serve_once(answer: &'static [u8]) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health?x=1", listener.local_addr().unwrap());
        let h = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(answer);
            String::from_utf8(req).unwrap()
        });
        (url, h)
    }

    #[test]
    fn healthy_on_2xx_and_3xx() {
        for (answer, code) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nVrypt"[..],
                200,
            ),
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], 204),
            (
                &b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n"[..],
                301,
            ),
            // HTTP/1.0, no reason phrase, bare LF.
            (&b"HTTP/1.0 200\n"[..], 200),
        ] {
            let (u, h) = serve_once(answer);
            assert_eq!(check(&u, Duration::from_secs(2)), Ok(code));
            let req = h.join().unwrap();
            let host = u
                .trim_start_matches("http://")
                .trim_end_matches("/health?x=1")
                .to_string();
            assert_eq!(
                req,
                format!(
                    "GET /health?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: vrypt-healthcheck\r\n\r\n"
                )
            );
        }
    }

    #[test]
    fn unhealthy_answers() {
        for answer in [
            &b"HTTP/1.1 500 Internal Server Error\r\n\r\n"[..],
            &b"HTTP/1.1 404 Not Found\r\n\r\n"[..],
            &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
            &b"garbage\r\n"[..],
            &b""[..],
        ] {
            let (u, h) = serve_once(answer);
            assert_eq!(run(&u, Duration::from_secs(2)), 1);
            h.join().unwrap();
        }
    }

    #[test]
    fn closed_port_is_unhealthy() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            run(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2)),
            1
        );
    }

    #[test]
    fn silent_server_times_out_on_time() {
        // Accepted by the kernel (backlog) but never answered.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let u = format!("http://{}/", listener.local_addr().unwrap());
        let t = Instant::now();
        let err = check(&u, Duration::from_millis(300)).unwrap_err();
        let took = t.elapsed();
        assert!(err.contains("timed out"), "{err}");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        drop(listener);
    }

    #[test]
    fn names_and_ipv6() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        });
        assert_eq!(
            check(&format!("http://localhost:{port}/"), Duration::from_secs(2)),
            Ok(200)
        );
        h.join().unwrap();
        if let Ok(l6) = TcpListener::bind("[::1]:0") {
            let port = l6.local_addr().unwrap().port();
            let h = thread::spawn(move || {
                let (mut s, _) = l6.accept().unwrap();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            });
            assert_eq!(
                check(&format!("http://[::1]:{port}/"), Duration::from_secs(2)),
                Ok(200)
            );
            h.join().unwrap();
        }
        assert_eq!(
            run("http://no-such-host.invalid/", Duration::from_secs(3)),
            1
        );
    }
}
