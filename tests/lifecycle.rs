//! Connection lifecycle over real sockets: output bounded per read, no bytes of one
//! connection reaching another, write/body/trailer deadlines that a trickling client
//! cannot defeat, graceful shutdown and lingering close that lose nothing, and
//! `Expect: 100-continue`. Each test is one defect, named `dN_...`.

mod common;

use common::{
    close_with_reset, curl_available, pattern, peer_gone, Ending, Next, Server, TempFile, GET,
    IO_TIMEOUT,
};
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const GET_A: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const HEAD_A: &[u8] = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// The next response, or a panic that says what came instead.
fn expect_response(c: &mut common::Client, head_request: bool, what: &str) -> common::Response {
    match c.next_response(head_request) {
        Next::Response(r) => r,
        other => panic!("{what}: {other:?}"),
    }
}

/// The first offset where `got` and `want` differ, for a readable failure message.
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .or((got.len() != want.len()).then(|| got.len().min(want.len())))
}

/// One read's worth of pipelined requests must not turn into an unbounded amount of
/// output in the server's memory: a 256 KiB response times 1,213 requests is 300 MiB.
#[test]
fn d1_pipelined_batch_output_is_bounded() {
    let body = pattern(256 * 1024, 1);
    let file = TempFile::new("d1", &body);
    let s = Server::start(&["--body-file", file.path_str()]);
    let rss_start = s.rss_kib();
    let n = 32 * 1024 / GET_A.len();
    let mut c = s.connect();
    c.send(&GET_A.repeat(n));
    // The client does not read for a second; watch the server's memory meanwhile.
    let mut peak = rss_start;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        peak = peak.max(s.rss_kib());
        thread::sleep(Duration::from_millis(25));
    }
    assert!(
        peak < rss_start + 32 * 1024,
        "server RSS grew from {rss_start} KiB to {peak} KiB while one client with {n} \
         pipelined GETs (32 KiB) did not read"
    );
    for i in 0..n {
        let r = expect_response(&mut c, false, &format!("response {i} of {n}"));
        assert_eq!(r.status, 200, "response {i}: {}", r.status_line);
        if let Some(at) = first_difference(&r.body, &body) {
            panic!(
                "response {i}: body ({} bytes) differs from the file at byte {at}",
                r.body.len()
            );
        }
    }
    assert_eq!(
        c.ending(Duration::from_millis(200)),
        Ending::Open,
        "after the {n} responses"
    );
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut rss = s.rss_kib();
    while rss >= rss_start + 32 * 1024 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        rss = s.rss_kib();
    }
    assert!(
        rss < rss_start + 32 * 1024,
        "server RSS {rss} KiB 3 s after the client closed, {rss_start} KiB at start"
    );
}

/// A client that sends requests and resets the connection must not leave its
/// responses in the worker to be sent to the next client.
#[test]
fn d2_responses_of_a_reset_client_never_reach_the_next() {
    let s = Server::start(&[]);
    for trial in 0..100 {
        let mut a = TcpStream::connect(s.addr).expect("connect A");
        a.write_all(&GET_A.repeat(3)).expect("A writes");
        close_with_reset(a);

        let mut b = s.connect();
        b.send(HEAD_A);
        let r = expect_response(&mut b, true, &format!("trial {trial}: B's HEAD"));
        assert_eq!(r.status, 200, "trial {trial}: {}", r.status_line);
        assert_eq!(r.header("Content-Length"), Some("5"), "trial {trial}");
        let end = b.ending(Duration::from_millis(50));
        assert_eq!(
            end,
            Ending::Open,
            "trial {trial}: B got more than its one HEAD response (bytes meant for A?)"
        );
    }
}

/// The write timeout runs from the last byte the client read, not from the last
/// byte it sent: a client that sends a byte now and then but never reads is closed.
#[test]
fn d3_write_timeout_holds_against_a_trickling_non_reader() {
    let body = pattern(1 << 20, 3);
    let file = TempFile::new("d3", &body);
    let s = Server::start(&["--write-timeout", "1s", "--body-file", file.path_str()]);
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(&GET.repeat(64)).expect("pipelined GETs");
    let started = Instant::now();
    let trickle = b"GET /trickle-trickle-trickle-trickle HTTP/1.1\r\nHost: a\r\n";
    let mut sent = 0;
    let outcome = loop {
        if peer_gone(&stream) {
            break Some("peer closed or reset (seen by poll)".to_string());
        }
        if started.elapsed() >= Duration::from_secs(4) {
            break None;
        }
        thread::sleep(Duration::from_millis(300));
        match stream.write_all(&trickle[sent % trickle.len()..][..1]) {
            Ok(()) => sent += 1,
            Err(e) => break Some(format!("send failed: {e}")),
        }
    };
    let waited = started.elapsed();
    assert!(
        outcome.is_some(),
        "connection still open {waited:?} after the client stopped reading \
         (--write-timeout 1s); it trickled {sent} bytes meanwhile"
    );
}

/// Connections already in the accept queue when SIGTERM arrives are answered (with
/// `Connection: close`) and closed cleanly, not reset by closing the listener.
#[test]
fn d4_sigterm_answers_connections_waiting_in_the_accept_queue() {
    let mut s = Server::start(&["--shutdown-timeout", "5s"]);
    s.signal(libc::SIGSTOP);
    s.wait_stopped(Duration::from_secs(5));
    // The kernel completes these handshakes and queues the requests while the
    // server is stopped.
    let mut clients: Vec<_> = (0..3)
        .map(|_| {
            let mut c = s.connect();
            c.send(GET);
            c
        })
        .collect();
    s.signal(libc::SIGTERM);
    s.signal(libc::SIGCONT);
    for (i, c) in clients.iter_mut().enumerate() {
        let r = expect_response(c, false, &format!("client {i} (queued at SIGTERM)"));
        assert_eq!(r.status, 200, "client {i}: {}", r.status_line);
        assert_eq!(
            r.header("Connection"),
            Some("close"),
            "client {i}: the response during shutdown does not close"
        );
        assert_eq!(
            c.ending(IO_TIMEOUT),
            Ending::Eof,
            "client {i} after its response"
        );
    }
    s.assert_exits_cleanly(Duration::from_secs(6));
}

/// The header timeout is per request head: a keep-alive client whose reads each end
/// in the middle of the next head, but whose every head completes quickly, never
/// gets a 408.
#[test]
fn d5_no_408_when_every_read_ends_mid_head() {
    let s = Server::start(&["--header-timeout", "1s"]);
    let mut c = s.connect();
    let head =
        |n: usize| format!("GET /{n} HTTP/1.1\r\nHost: a\r\nX-Seq: {n}\r\n\r\n").into_bytes();
    let first = head(0);
    c.send(&first[..first.len() / 2]);
    let mut rest = first[first.len() / 2..].to_vec();
    let started = Instant::now();
    let mut answered = 0;
    for n in 1..=60 {
        if started.elapsed() >= Duration::from_secs(3) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        let next = head(n);
        let mut piece = std::mem::take(&mut rest);
        piece.extend_from_slice(&next[..next.len() / 2]);
        rest = next[next.len() / 2..].to_vec();
        // A write can fail once the server has answered 408 and closed; the read says why.
        let _ = c.stream.write_all(&piece);
        let r = expect_response(&mut c, false, &format!("request {}", n - 1));
        assert_eq!(
            r.status,
            200,
            "request {} after {:?} of pipelined heads, each complete within 100 ms: {}",
            n - 1,
            started.elapsed(),
            r.status_line
        );
        answered += 1;
    }
    assert!(answered >= 20, "only {answered} requests in 3 s");
}

/// `Expect: 100-continue`: the client waits for `100 Continue` before it sends the
/// body; then the final response, and the connection stays usable.
#[test]
fn d6a_expect_continue_gets_100_then_final_response() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n");
    let first = expect_response(&mut c, false, "the interim response");
    assert_eq!(
        (first.status_line.as_str(), first.wire_len),
        (
            "HTTP/1.1 100 Continue",
            "HTTP/1.1 100 Continue\r\n\r\n".len()
        ),
        "first answer to Expect: 100-continue, headers {:?}",
        first.headers
    );
    c.send(&[b'b'; 1000]);
    let r = expect_response(&mut c, false, "the final response to the upload");
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(r.body, b"Vrypt");
    c.send(GET);
    let r = expect_response(&mut c, false, "a GET after the upload");
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(r.body, b"Vrypt");
}

/// RFC 9110 §10.1.1: no 100 (Continue) to an HTTP/1.0 request, even with `Expect`.
#[test]
fn d6b_http10_expect_gets_no_100() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n0123456789");
    let r = expect_response(&mut c, false, "the answer to an HTTP/1.0 upload");
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(r.body, b"Vrypt");
    assert_eq!(
        c.ending(IO_TIMEOUT),
        Ending::Eof,
        "after the HTTP/1.0 answer"
    );
}

/// Real curl uploads 2 MiB (it sends `Expect: 100-continue` for that) and then reuses
/// the connection for a GET.
#[test]
fn d6c_curl_upload_then_reuse() {
    if !curl_available() {
        eprintln!("SKIP d6c_curl_upload_then_reuse: curl not found on PATH; nothing was checked");
        return;
    }
    let s = Server::start(&[]);
    let file = TempFile::new("d6c", &pattern(2 << 20, 6));
    let url = format!("http://127.0.0.1:{}/", s.port());
    let data = format!("@{}", file.path_str());
    let mut child = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\\n"])
        .args(["--data-binary", &data, &url, "--next"])
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            timed_out = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !timed_out,
        "curl still running after 15 s; stdout {stdout:?}, stderr {stderr:?}"
    );
    assert!(
        out.status.success() && stdout == "200\n200\n",
        "curl exit {:?}; stdout {stdout:?} (want \"200\\n200\\n\"); stderr {stderr:?}",
        out.status.code()
    );
}

/// SIGTERM while a non-reading client has a deep pipeline: everything the server
/// answers arrives complete, the last answer says `Connection: close`, then EOF (no
/// reset that destroys responses in flight), and the server exits 0.
#[test]
fn d7_shutdown_loses_nothing_already_answered() {
    // Far more than the server reads before SIGTERM (its socket buffers take about
    // 1 MB of requests while it holds back): megabytes are still unread when it
    // decides to close. With 60,000 the rest fit what it discards before closing,
    // and the reset this test is about did not happen here.
    const PIPELINE: usize = 150_000;
    let mut s = Server::start(&["--shutdown-timeout", "20s"]);
    let mut c = s.connect();
    let mut w = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let batch = GET.repeat(PIPELINE);
        // Blocks while the server holds back; fails once the server has closed.
        let _ = w.write_all(&batch);
    });
    thread::sleep(Duration::from_secs(1));
    s.signal(libc::SIGTERM);
    let term = Instant::now();
    let mut count = 0usize;
    let mut close_at = None;
    loop {
        match c.next_response(false) {
            Next::Response(r) => {
                assert_eq!(r.status, 200, "response {count}: {}", r.status_line);
                assert!(
                    close_at.is_none(),
                    "response {count} came after response {close_at:?} with Connection: close"
                );
                if r.header("Connection") == Some("close") {
                    close_at = Some(count);
                }
                count += 1;
            }
            Next::Eof => break,
            other => panic!(
                "after {count} complete responses ({:?} after SIGTERM): {other:?}, \
                 with {} bytes of a partial response",
                term.elapsed(),
                c.buffered().len()
            ),
        }
        assert!(count <= PIPELINE, "more responses than requests");
        assert!(
            term.elapsed() < Duration::from_secs(12),
            "no EOF 12 s after SIGTERM ({count} responses)"
        );
    }
    assert!(
        c.buffered().is_empty(),
        "EOF after {count} responses with a partial response of {} bytes",
        c.buffered().len()
    );
    assert!(count >= 1, "no response at all");
    assert_eq!(
        close_at,
        Some(count - 1),
        "the last of {count} responses does not carry Connection: close"
    );
    drop(c);
    writer.join().unwrap();
    let left = Duration::from_secs(20).saturating_sub(term.elapsed());
    s.assert_exits_cleanly(left.min(Duration::from_secs(10)));
}

/// Bytes sent after the request that closes the connection are read and discarded
/// while the responses are delivered: the client sees every response and then EOF,
/// never a reset.
#[test]
fn d8_lingering_close_does_not_reset() {
    let s = Server::start(&[]);
    // A small receive window (a slow network) keeps responses in the server's send
    // queue while it lingers, where a reset destroys them. With the default buffers
    // on loopback all 1001 responses (130 KB) reach the client before the reset.
    let mut c = s.connect_small_rcvbuf(8 * 1024);
    let mut w = c.stream.try_clone().unwrap();
    let mut data = GET.repeat(1000);
    data.extend_from_slice(GET_CLOSE);
    data.extend(std::iter::repeat_n(b'x', 3_000_000));
    let writer = thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    for i in 0..1001 {
        let r = expect_response(&mut c, false, &format!("response {i} of 1001"));
        assert_eq!(r.status, 200, "response {i}: {}", r.status_line);
        let closes = r.header("Connection") == Some("close");
        assert_eq!(
            closes,
            i == 1000,
            "response {i}: Connection {:?}",
            r.header("Connection")
        );
    }
    assert_eq!(
        c.ending(IO_TIMEOUT),
        Ending::Eof,
        "after the 1001 responses"
    );
    drop(c);
    writer.join().unwrap();
}

/// Sends a byte every 300 ms until a complete response arrives or `limit` passes.
fn trickle_until_response(
    c: &mut common::Client,
    bytes: &[u8],
    limit: Duration,
) -> Option<(common::Response, Duration)> {
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < limit {
        let _ = c.stream.write_all(&bytes[i % bytes.len()..][..1]);
        i += 1;
        match c.next_response(false) {
            Next::Response(r) => return Some((r, started.elapsed())),
            Next::Timeout => {}
            other => panic!("after {i} trickled bytes: {other:?}"),
        }
    }
    None
}

/// `--body-timeout`: a body trickled one byte at a time gets 408 and a close.
#[test]
fn d9a_slow_body_gets_408() {
    let s = Server::start(&["--body-timeout", "2s"]);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    let Some((r, waited)) = trickle_until_response(&mut c, b"b", Duration::from_secs(5)) else {
        panic!("no response within 5 s to a body trickled at 1 byte / 300 ms (--body-timeout 2s)");
    };
    assert_eq!(r.status, 408, "{} after {waited:?}", r.status_line);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(
        waited >= Duration::from_millis(1500),
        "408 after {waited:?}, before the body timeout of 2 s"
    );
    assert_eq!(
        c.ending(Duration::from_secs(3)),
        Ending::Eof,
        "after the 408"
    );
}

/// The trailer section of a chunked body is header data: trickling an endless
/// trailer line is stopped by the header timeout.
#[test]
fn d9b_endless_trailer_gets_408() {
    let s = Server::start(&["--header-timeout", "1s"]);
    let mut c = s.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    let mut trailer = b"X-Trailer: ".to_vec();
    trailer.extend(std::iter::repeat_n(b'a', 64));
    let Some((r, waited)) = trickle_until_response(&mut c, &trailer, Duration::from_secs(4)) else {
        panic!(
            "no response within 4 s to a trailer trickled at 1 byte / 300 ms (--header-timeout 1s)"
        );
    };
    assert_eq!(r.status, 408, "{} after {waited:?}", r.status_line);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(
        c.ending(Duration::from_secs(3)),
        Ending::Eof,
        "after the 408"
    );
}

/// A body sent at once is unaffected by `--body-timeout`, and no body deadline is
/// left behind on the kept-alive connection.
#[test]
fn d9c_prompt_body_is_not_timed_out() {
    let s = Server::start(&["--body-timeout", "2s"]);
    let mut c = s.connect();
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'b', 100_000));
    c.send(&req);
    let r = expect_response(&mut c, false, "the answer to a prompt 100 KB body");
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert!(r.header("Connection").is_none(), "{:?}", r.headers);
    // Longer than the body timeout: the idle keep-alive connection must survive it.
    thread::sleep(Duration::from_millis(2500));
    c.send(GET);
    let r = expect_response(&mut c, false, "a GET 2.5 s later on the same connection");
    assert_eq!(r.status, 200, "{}", r.status_line);
}

/// A 64 MiB `--body-file` is served byte for byte, and idle keep-alive connections
/// cost memory independent of the body size.
#[test]
fn d10_64_mib_body_served_and_idle_connections_stay_cheap() {
    let body = pattern(64 << 20, 10);
    let file = TempFile::new("d10", &body);
    let s = Server::start(&["--body-file", file.path_str()]);
    let rss_start = s.rss_kib();
    let mut idle: Vec<_> = (0..50).map(|_| s.connect()).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        c.send(HEAD_A);
        let r = expect_response(c, true, &format!("HEAD on connection {i}"));
        assert_eq!(r.status, 200, "connection {i}: {}", r.status_line);
        assert_eq!(r.header("Content-Length"), Some("67108864"));
    }
    let rss_idle = s.rss_kib();
    assert!(
        rss_idle <= rss_start + 2048,
        "50 idle keep-alive connections grew RSS from {rss_start} KiB to {rss_idle} KiB"
    );
    let mut c = s.connect();
    c.send(GET);
    let r = expect_response(&mut c, false, "GET of the 64 MiB body");
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(r.body.len(), body.len(), "body length");
    if let Some(at) = first_difference(&r.body, &body) {
        panic!("the 64 MiB body differs from the file at byte {at}");
    }
    drop(idle);
}
