//! HTTP/1.1 behaviour over real sockets (RFC 9112), as a client sees it.

mod common;

use common::{Client, Server, GET};
use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

fn assert_default_200(r: &common::Response) {
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("5"));
    assert_eq!(r.header("Server"), Some("vrypt"));
    assert_eq!(r.body, b"Vrypt");
}

#[test]
fn default_response_has_all_headers() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"GET /any/path?x=1 HTTP/1.1\r\nHost: test\r\nUser-Agent: t\r\n\r\n");
    let r = c.response(false);
    assert_default_200(&r);
    // RFC 9110 §5.6.7 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    let date = r.header("Date").expect("Date header");
    assert_eq!(date.len(), 29, "{date}");
    assert!(
        date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "{date}"
    );
    assert!(r.header("Connection").is_none());
}

#[test]
fn any_method_any_path() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"] {
        c.send(format!("{m} /{m}/x HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_default_200(&c.response(false));
    }
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
}

#[test]
fn keep_alive_by_default_for_http11() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    for _ in 0..5 {
        c.send(GET);
        assert_default_200(&c.response(false));
    }
}

#[test]
fn http10_closes_unless_keep_alive_requested() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());

    let mut c = s.connect();
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
}

#[test]
fn connection_close_is_honoured_and_echoed() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.response(false);
    assert_default_200(&r);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn pipelined_requests_answered_in_order() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let mut batch = Vec::new();
    let methods: Vec<bool> = (0..16).map(|i| i % 3 == 1).collect();
    for &head in &methods {
        batch.extend_from_slice(if head {
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
        } else {
            GET
        });
    }
    c.send(&batch);
    for &head in &methods {
        let r = c.response(head);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Length"), Some("5"));
        assert_eq!(r.body.len(), if head { 0 } else { 5 });
    }
    // The connection is still usable and nothing extra was sent.
    c.send(GET);
    assert_default_200(&c.response(false));
}

#[test]
fn pipelined_batch_ending_in_close() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.response(false).header("Connection").is_none());
    assert_eq!(c.response(false).header("Connection"), Some("close"));
    assert!(c.closed(), "no response after the one that closed");
}

#[test]
fn head_has_headers_but_no_body() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response(true);
    assert_eq!(r.header("Content-Length"), Some("5"));
    // If a body had been sent it would now be read as the start of the next response.
    c.send(GET);
    assert_default_200(&c.response(false));
}

#[test]
fn content_length_body_across_reads_is_discarded() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    // The body looks like a request: it must never be answered as one.
    let body = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in body.chunks(7) {
        c.send(piece);
        thread::sleep(Duration::from_millis(5));
    }
    assert_default_200(&c.response(false));
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response(true);
    assert_eq!(r.status, 200);
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.try_response(false).is_none(),
        "the body was answered as a request"
    );
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let req: &[u8] = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n1B; a=\"quoted\"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n\
        0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n";
    for piece in req.chunks(11) {
        c.send(piece);
        thread::sleep(Duration::from_millis(2));
    }
    assert_default_200(&c.response(false));
    c.send(GET);
    assert_default_200(&c.response(false));
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.try_response(false).is_none(),
        "chunk data was answered as a request"
    );
}

#[test]
fn expect_continue_gets_100_then_the_answer_after_the_body() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    // RFC 9110 §10.1.1: the client waits for 100 (Continue) before it sends the content.
    let interim = c.response(false);
    assert_eq!(interim.status_line, "HTTP/1.1 100 Continue");
    assert!(interim.headers.is_empty() && interim.body.is_empty());
    c.send(b"0123456789");
    assert_default_200(&c.response(false));
    c.send(GET);
    assert_default_200(&c.response(false));
}

/// Sends `req` and expects `status` followed by the server closing the connection.
fn rejected(s: &Server, req: &[u8], status: u16) {
    let mut c = s.connect();
    c.send(req);
    let r = c.response(false);
    assert_eq!(
        r.status,
        status,
        "for {:?}: {:?}",
        String::from_utf8_lossy(req),
        r.status_line
    );
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed(), "connection left open after {status}");
}

#[test]
fn malformed_requests_get_400_and_close() {
    let s = Server::start(&[]);
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        b"GET /\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        rejected(&s, req, 400);
    }
}

#[test]
fn ambiguous_framing_gets_400() {
    let s = Server::start(&[]);
    for req in [
        &b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    ] {
        rejected(&s, req, 400);
    }
}

#[test]
fn limits_and_versions() {
    let s = Server::start(&["--max-header-bytes", "1024"]);
    let mut long_target = b"GET /".to_vec();
    long_target.extend(std::iter::repeat_n(b'a', 2000));
    long_target.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    rejected(&s, &long_target, 414);

    let mut big = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..40 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    rejected(&s, &big, 431);

    rejected(&s, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    rejected(&s, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
    rejected(
        &s,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        501,
    );

    // Just under the limit is fine.
    let mut ok = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    ok.extend(std::iter::repeat_n(b'p', 1024 - ok.len() - 4));
    ok.extend_from_slice(b"\r\n\r\n");
    assert_eq!(ok.len(), 1024);
    let mut c = s.connect();
    c.send(&ok);
    assert_eq!(c.response(false).status, 200);
}

#[test]
fn oversized_head_sent_slowly_still_gets_431() {
    let s = Server::start(&["--max-header-bytes", "512"]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    for _ in 0..20 {
        if c.stream
            .write_all(b"X-Slow: 0123456789012345678901234567890123456789\r\n")
            .is_err()
        {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    let r = c.response(false);
    assert_eq!(r.status, 431);
    assert!(c.closed());
}

#[test]
fn custom_response() {
    let dir = std::env::temp_dir().join(format!("vrypt-body-{}", std::process::id()));
    std::fs::write(&dir, b"{\"ok\":true}\n").unwrap();
    let s = Server::start(&[
        "--status",
        "404",
        "--body-file",
        dir.to_str().unwrap(),
        "--content-type",
        "application/json",
        "--header",
        "X-Served-By: test",
        "--header",
        "Cache-Control: no-store",
        "--no-server-header",
    ]);
    let mut c = s.connect();
    c.send(GET);
    let r = c.response(false);
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(r.body, b"{\"ok\":true}\n");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("X-Served-By"), Some("test"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert!(r.header("Server").is_none());
    let _ = std::fs::remove_file(dir);

    let s = Server::start(&["--status", "204"]);
    let mut c = s.connect();
    c.send(GET);
    c.send(GET);
    let r = c.response(false);
    assert_eq!(r.status_line, "HTTP/1.1 204 No Content");
    assert!(r.header("Content-Length").is_none() && r.body.is_empty());
    assert_eq!(c.response(false).status, 204);
}

#[test]
fn dual_stack_default_address() {
    // --port 0 keeps the default wildcard address: [::] dual-stack when the host has IPv6.
    let s = Server::start_with(common::command().args([
        "--port",
        "0",
        "--workers",
        "1",
        "--statsd",
        "off",
    ]));
    let mut v4 = Client::connect(SocketAddr::from(([127, 0, 0, 1], s.port())));
    v4.send(GET);
    assert_eq!(v4.response(false).status, 200);
    if s.addr.is_ipv6() {
        let mut v6 = Client::connect(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, s.port())));
        v6.send(GET);
        assert_eq!(v6.response(false).status, 200);
        assert!(s.log_text().contains("dual_stack=true"));
    } else {
        eprintln!("SKIPPED: the IPv6 part of dual_stack_default_address (no IPv6 on this host)");
    }
}

#[test]
fn many_workers_share_the_port() {
    let s = Server::start_with(&mut common::local_command("4"));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let addr = SocketAddr::from(([127, 0, 0, 1], s.port()));
            thread::spawn(move || {
                for _ in 0..20 {
                    let mut c = Client::connect(addr);
                    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                    assert_eq!(c.response(false).status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
