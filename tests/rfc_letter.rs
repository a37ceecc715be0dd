//! The letter of RFC 9110/9112 on points a lenient parser gets wrong: Host syntax,
//! transfer codings, chunk and trailer lines, bodiless answers, long Content-Length
//! digits and raw bytes in the request-target. Each over a real socket.

mod common;

use common::{Ending, Next, Server, IO_TIMEOUT};
use std::io::Write;
use std::time::Duration;

/// Sends `req` and expects `status` with `Connection: close`, then the close.
fn rejected(s: &Server, req: &[u8], status: u16) {
    let mut c = s.connect();
    c.send(req);
    let what = String::from_utf8_lossy(req);
    let r = match c.next_response(false) {
        Next::Response(r) => r,
        other => panic!("for {what:?}: {other:?}"),
    };
    assert_eq!(r.status, status, "for {what:?}: {:?}", r.status_line);
    assert_eq!(r.header("Connection"), Some("close"), "for {what:?}");
    assert!(
        c.closed(),
        "for {what:?}: connection left open after {status}"
    );
}

/// Sends `req` (and nothing after it) and expects a 200.
fn accepted(s: &Server, req: &[u8]) {
    let mut c = s.connect();
    c.send(req);
    let what = String::from_utf8_lossy(req);
    match c.next_response(false) {
        Next::Response(r) => assert_eq!(r.status, 200, "for {what:?}: {:?}", r.status_line),
        other => panic!("for {what:?}: {other:?}"),
    }
}

/// RFC 9110 §7.2 / RFC 3986 §3.2.2: Host is `uri-host [ ":" port ]`; anything else is 400.
#[test]
fn host_with_invalid_value_gets_400() {
    let s = Server::start(&[]);
    for host in ["a b", "a/b", "u@a", "a, b"] {
        rejected(
            &s,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            400,
        );
    }
}

#[test]
fn host_with_port_or_ip_literal_is_accepted() {
    let s = Server::start(&[]);
    for host in ["example.com:8080", "[::1]:80"] {
        accepted(
            &s,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
    }
}

/// RFC 9112 §6.1: a transfer coding the server does not understand is 501.
#[test]
fn unknown_transfer_coding_before_chunked_gets_501() {
    let s = Server::start(&[]);
    for te in ["gzip, chunked", "cow, chunked"] {
        rejected(
            &s,
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n")
                .as_bytes(),
            501,
        );
    }
}

/// RFC 9112 §7.1.1: after the chunk size only `BWS ";"` may start an extension.
#[test]
fn chunk_size_followed_by_junk_gets_400() {
    let s = Server::start(&[]);
    for line in ["5 xyz", "5\txyz"] {
        rejected(
            &s,
            format!(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
            400,
        );
    }
}

/// RFC 9112 §7.1.2: a trailer line is a field line, `name ":" value`.
#[test]
fn trailer_line_without_colon_gets_400() {
    let s = Server::start(&[]);
    rejected(
        &s,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon here\r\n\r\n",
        400,
    );
}

/// Sends a HEAD request that the server rejects: the answer has `status`, a
/// Content-Length, and no body bytes before EOF (RFC 9110 §9.3.2).
fn head_error_has_no_body(s: &Server, req: &[u8], status: u16) {
    let mut c = s.connect();
    c.send(req);
    let r = match c.next_response(true) {
        Next::Response(r) => r,
        other => panic!("HEAD rejected with {status}: {other:?}"),
    };
    assert_eq!(r.status, status, "{}", r.status_line);
    assert!(
        r.header("Content-Length").is_some(),
        "no Content-Length in {:?}",
        r.headers
    );
    assert_eq!(
        c.ending(IO_TIMEOUT),
        Ending::Eof,
        "what followed the head of the {status} answer to HEAD"
    );
}

#[test]
fn head_answered_400_has_no_body() {
    let s = Server::start(&[]);
    head_error_has_no_body(
        &s,
        b"HEAD / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        400,
    );
}

#[test]
fn head_answered_414_has_no_body() {
    let s = Server::start(&["--max-header-bytes", "1024"]);
    let mut req = b"HEAD /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 2000));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    head_error_has_no_body(&s, &req, 414);
}

#[test]
fn head_answered_431_has_no_body() {
    let s = Server::start(&["--max-header-bytes", "1024"]);
    let mut req = b"HEAD / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..40 {
        req.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(40)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    head_error_has_no_body(&s, &req, 431);
}

#[test]
fn head_answered_505_has_no_body() {
    let s = Server::start(&[]);
    head_error_has_no_body(&s, b"HEAD / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
}

/// GETs once with `--status code` and returns the response head (body not read) and
/// what followed it before EOF.
fn bodiless_status(code: &str) -> (common::Response, Ending) {
    let s = Server::start(&["--status", code]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let r = match c.next_response(true) {
        Next::Response(r) => r,
        other => panic!("--status {code}: {other:?}"),
    };
    assert_eq!(r.status.to_string(), code, "{}", r.status_line);
    (r, c.ending(IO_TIMEOUT))
}

/// RFC 9110 §15.3.6: 205 has no content (Content-Length 0 or none).
#[test]
fn status_205_sends_no_body() {
    let (r, end) = bodiless_status("205");
    let len = r.header("Content-Length");
    assert!(len.is_none() || len == Some("0"), "Content-Length {len:?}");
    assert_eq!(end, Ending::Eof, "after the 205 head");
}

/// RFC 9110 §8.6 / §15.4.5: a 304 to a GET must not carry a Content-Length that is
/// not the representation's; the server has none to give, so none at all.
#[test]
fn status_304_sends_no_content_length_and_no_body() {
    let (r, end) = bodiless_status("304");
    assert_eq!(r.header("Content-Length"), None, "{:?}", r.headers);
    assert_eq!(end, Ending::Eof, "after the 304 head");
}

/// RFC 9110 §8.6: no Content-Length in a 204.
#[test]
fn status_204_sends_no_content_length() {
    let (r, end) = bodiless_status("204");
    assert_eq!(r.header("Content-Length"), None, "{:?}", r.headers);
    assert_eq!(end, Ending::Eof, "after the 204 head");
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`; leading zeros do not make it invalid.
#[test]
fn content_length_with_many_leading_zeros_is_valid() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000003\r\n\r\nabc\
          GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    for what in ["the POST", "the pipelined GET after it"] {
        match c.next_response(false) {
            Next::Response(r) => assert_eq!(r.status, 200, "{what}: {}", r.status_line),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(c.ending(Duration::from_millis(200)), Ending::Open);
}

/// RFC 9112 §3.2 / RFC 3986: a request-target is visible ASCII; a raw control byte
/// is invalid.
#[test]
fn target_with_raw_control_byte_gets_400() {
    let s = Server::start(&[]);
    rejected(&s, b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

/// RFC 3986 has no raw bytes >= 0x80 in a URI: they must be percent-encoded.
#[test]
fn target_with_raw_high_byte_gets_400() {
    let s = Server::start(&[]);
    for byte in [0x80u8, 0xc3, 0xff] {
        let mut req = b"GET /a".to_vec();
        req.push(byte);
        req.extend_from_slice(b"b HTTP/1.1\r\nHost: a\r\n\r\n");
        rejected(&s, &req, 400);
    }
}

/// RFC 9112 §2.2: older clients send an extra CRLF after a POST body, and a server
/// SHOULD ignore empty lines before a request line. They are not the start of a
/// request: no 408 when the header timeout passes, and the next request on the
/// connection is answered.
#[test]
fn extra_crlf_after_a_post_body_is_not_a_request() {
    let s = Server::start(&["--header-timeout", "500ms", "--idle-timeout", "5s"]);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\r\n");
    assert_eq!(c.response(false).status, 200);
    // Three times the header timeout: the empty line got no 408 and no close.
    assert_eq!(c.ending(Duration::from_millis(1500)), Ending::Open);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status, r.header("Connection")), (200, None));
}

/// The same with the CRLF split over two reads (as when a body and its extra CRLF
/// cross a read boundary): the lone CR begins no request either, so the connection
/// stays under its idle deadline, and a request sent later gets its full header
/// timeout.
#[test]
fn an_extra_crlf_split_over_two_reads_is_not_a_request() {
    let s = Server::start(&["--header-timeout", "600ms", "--idle-timeout", "5s"]);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\r");
    assert_eq!(c.response(false).status, 200);
    std::thread::sleep(Duration::from_millis(150));
    c.send(b"\n");
    // Past the header timeout, counted from the CR: still open.
    assert_eq!(c.ending(Duration::from_millis(900)), Ending::Open);
    // A head sent in two parts, 400 ms apart: within its own header timeout.
    c.send(b"GET / HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(400));
    c.send(b"Host: a\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
}

/// Empty lines are ignored, but they are not activity either: a client that sends
/// only CRLFs is closed at the idle timeout after its last answer, without a
/// response, however often it sends them.
#[test]
fn empty_lines_do_not_extend_the_idle_timeout() {
    let s = Server::start(&["--idle-timeout", "1s"]);
    let mut c = s.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response(false).status, 200);
    let answered = std::time::Instant::now();
    let end = loop {
        // A CRLF every 200 ms, for at most 4 s (four idle timeouts).
        if answered.elapsed() > Duration::from_secs(4) {
            break Ending::Open;
        }
        if c.stream.write_all(b"\r\n").is_err() {
            break Ending::Reset;
        }
        match c.ending(Duration::from_millis(200)) {
            Ending::Open => {}
            other => break other,
        }
    };
    let waited = answered.elapsed();
    assert!(
        matches!(end, Ending::Eof | Ending::Reset),
        "after {waited:?} of CRLFs: {end:?}"
    );
    assert!(
        waited < Duration::from_millis(2500),
        "closed only after {waited:?} with --idle-timeout 1s"
    );
}

/// A fresh connection that sends only empty lines has not started a request: it is
/// closed at the header timeout, without a 408.
#[test]
fn a_new_connection_sending_only_empty_lines_is_closed_at_the_header_timeout() {
    let s = Server::start(&["--header-timeout", "600ms", "--idle-timeout", "10s"]);
    let mut c = s.connect();
    let started = std::time::Instant::now();
    c.send(b"\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"\r\n");
    let end = c.ending(IO_TIMEOUT);
    let waited = started.elapsed();
    assert!(matches!(end, Ending::Eof | Ending::Reset), "{end:?}");
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(3),
        "closed after {waited:?} with --header-timeout 600ms"
    );
}
