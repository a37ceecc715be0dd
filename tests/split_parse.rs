//! Property test: arbitrary bytes, split at arbitrary points, through the request
//! parser and the request path. Nothing panics, and a stream fed in pieces gives
//! exactly the responses (and the same final state) as the stream fed whole.
//!
//! Inputs come from a seeded generator (reproducible) that mixes well-formed
//! requests, framing headers, chunked bodies, mutations and raw noise. A second
//! generator makes request heads only, for the resumable head parser.

use vrypt_server::testing::{parse_head, HeadParser, ParseError, Status};
use vrypt_server::testing::{replay, Replay, Rng};

const PIECES: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"\r\n",
    b"Content-Length: 7\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Host: b\r\n",
    b"\r\n\r\n",
    b"0\r\n\r\n",
    b"ffff\r\n",
    b"GET / HTTP/2.0\r\n",
    b"CONNECT a:1 HTTP/1.1\r\n",
    b" ",
    b"\n",
    b"\r",
    b"\0",
    b":",
    b";",
];

fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(8) {
        match rng.below(10) {
            0 => {
                for _ in 0..rng.below(64) {
                    out.push(rng.next() as u8);
                }
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.truncate(i);
            }
            _ => out.extend_from_slice(rng.pick(PIECES)),
        }
    }
    out
}

fn feed(data: &[u8], cuts: &[usize], max_head: usize) -> Replay {
    replay(data, cuts, max_head)
}

#[test]
fn split_streams_behave_like_whole_streams() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..20_000 {
        let data = generate(&mut rng);
        let max_head = if case % 4 == 0 { 64 } else { 8192 };
        let whole = feed(&data, &[], max_head);
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(data.len() + 1))
            .collect();
        cuts.sort_unstable();
        if case % 7 == 0 {
            cuts = (1..data.len()).collect(); // one byte at a time
        }
        let split = feed(&data, &cuts, max_head);
        let show = String::from_utf8_lossy(&data);
        assert_eq!(
            whole.out, split.out,
            "case {case}: responses differ for {show:?} cut at {cuts:?}"
        );
        assert_eq!(
            whole.state, split.state,
            "case {case}: state differs for {show:?} cut at {cuts:?}"
        );
        assert_eq!(whole.held, split.held, "case {case}: {show:?}");
        assert_eq!(whole.counters, split.counters, "case {case}: {show:?}");
        // Whatever the input, nothing but well-formed requests is answered 200.
        let answers = String::from_utf8_lossy(&whole.out)
            .matches("HTTP/1.1 200 OK")
            .count() as u64;
        assert_eq!(answers, whole.counters.responses_2xx);
        assert!(answers <= whole.counters.requests);
    }
}

#[test]
fn head_prefixes_agree_with_whole_head() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let data = generate(&mut rng);
        let whole = parse_head(&data, 8192);
        let end = match whole {
            Ok(Status::Complete(h)) => h.len,
            _ => data.len(),
        };
        for n in 0..end {
            let prefix = parse_head(&data[..n], 8192);
            match (&whole, &prefix) {
                (_, Ok(Status::Partial)) => {}
                (Err(a), Err(b)) if a == b => {}
                _ => panic!(
                    "prefix {n} of {:?}: {prefix:?}, whole: {whole:?}",
                    String::from_utf8_lossy(&data)
                ),
            }
        }
    }
}

const REQUEST_LINES: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"HEAD /index.html?a=b HTTP/1.1\r\n",
    b"POST /upload HTTP/1.1\n",
    b"GET http://example.com/ HTTP/1.0\r\n",
    b"OPTIONS * HTTP/1.1\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\n",
    b"GET / HTTP/1.9\r\n",
    // Invalid ones.
    b"GET / HTTP/2.0\r\n",
    b"GET / HTTP/1.1 \r\n",
    b"GET /\r\n",
    b"GET  / HTTP/1.1\r\n",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\n",
    b"GET /a\tb HTTP/1.1\r\n",
    b"G\xe9T / HTTP/1.1\r\n",
    b"GET / http/1.1\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
];

const FIELD_LINES: &[&[u8]] = &[
    b"Host: example.com\r\n",
    b"Host: example.com:8080\r\n",
    b"Host: 127.0.0.1\r\n",
    b"Host: [::1]:80\r\n",
    b"Host: xn--bcher-kva.example\r\n",
    b"Host:\r\n",
    b"Host: a b\r\n",
    b"Host: a/b\r\n",
    b"Host: u@a\r\n",
    b"Host: a, b\r\n",
    b"Host: [::1\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 00000000000000000003\r\n",
    b"Content-Length: 4611686018427387905\r\n",
    b"Content-Length: 1, 1\r\n",
    b"Content-Length: 1, 2\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: cow, chunked\r\n",
    b"Transfer-Encoding: chunked, chunked\r\n",
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Expect: 100-continue\r\n",
    b"Accept: */*\r\n",
    b"User-Agent: x/1.0 (y; z)\r\n",
    b"X-Empty:\r\n",
    b"X-Obs: \x80\xff\r\n",
    b"X-Bare-LF: 1\n",
    // Invalid ones.
    b" folded\r\n",
    b"Bad Name: x\r\n",
    b"NoColon\r\n",
    b": x\r\n",
    b"X: a\rb\r\n",
    b"X: a\x00b\r\n",
];

/// TLS records, HTTP/2 frames and other bytes that are not HTTP/1 at all.
const GARBAGE: &[&[u8]] = &[
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x9a\x1e",
    b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76",
    b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\xff\xfe\xfd",
];

/// Single bytes that end or break a head's tokens.
const NOISE: &[u8] = b" \t\r\n\0:;,@[]\x7f\x80\xff";

/// A request head, valid or nearly so, or garbage; sometimes padded to within a few
/// bytes of `max_head`, or with a target that is too long.
fn generate_head(rng: &mut Rng, max_head: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.below(12) == 0 {
        out.extend_from_slice(rng.pick(GARBAGE));
        return out;
    }
    for _ in 0..rng.below(4).saturating_sub(2) {
        out.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
    }
    if rng.below(10) == 0 {
        // A long target, possibly longer than the limit.
        out.extend_from_slice(b"GET /");
        let n = rng.below(max_head + 64);
        out.extend((0..n).map(|k| b"abc/%20?=&"[k % 10]));
        out.extend_from_slice(b" HTTP/1.1\r\n");
    } else if rng.below(6) == 0 {
        out.extend_from_slice(rng.pick(REQUEST_LINES));
    } else {
        out.extend_from_slice(rng.pick(&REQUEST_LINES[..7]));
    }
    if rng.below(5) != 0 {
        out.extend_from_slice(b"Host: a\r\n");
    }
    for _ in 0..rng.below(8) {
        if rng.below(5) == 0 {
            out.extend_from_slice(rng.pick(FIELD_LINES));
        } else {
            out.extend_from_slice(rng.pick(&FIELD_LINES[..30]));
        }
    }
    if rng.below(4) == 0 {
        // Pad to within a few bytes of the limit, either side.
        let want = (max_head + 8).saturating_sub(rng.below(16));
        if out.len() + 12 < want {
            out.extend_from_slice(b"X-Pad: ");
            let n = want - out.len() - 2 - 2;
            out.extend(std::iter::repeat_n(b'p', n));
            out.extend_from_slice(b"\r\n");
        }
    }
    if rng.below(10) != 0 {
        out.extend_from_slice(b"\r\n");
    }
    if rng.below(4) == 0 && !out.is_empty() {
        let i = rng.below(out.len());
        match rng.below(3) {
            0 => out[i] = rng.next() as u8,
            1 => out.truncate(i),
            _ => out.insert(i, NOISE[rng.below(NOISE.len())]),
        }
    }
    // What follows the head (a body, the next request) must not matter.
    out.extend_from_slice(rng.pick(PIECES));
    out
}

#[test]
fn resumed_head_parser_agrees_with_whole_prefix() {
    let mut rng = Rng(0xC0FF_EE00_D15E_A5E5);
    let (mut complete, mut partial, mut errors) = (0, 0, 0);
    let mut kinds: Vec<ParseError> = Vec::new();
    for case in 0..40_000 {
        let max_head = [64, 100, 256, 1024, 8192][case % 5];
        let data = if case % 3 == 0 {
            generate(&mut rng)
        } else {
            generate_head(&mut rng, max_head)
        };
        // Cut points: random, or one byte at a time.
        let mut cuts: Vec<usize> = if case % 11 == 0 {
            (0..=data.len()).collect()
        } else {
            (0..rng.below(8))
                .map(|_| rng.below(data.len() + 1))
                .chain([data.len()])
                .collect()
        };
        cuts.sort_unstable();
        let mut p = HeadParser::new();
        for &n in &cuts {
            let prefix = &data[..n];
            let resumed = p.parse(prefix, max_head);
            let whole = parse_head(prefix, max_head);
            assert_eq!(
                resumed,
                whole,
                "case {case}: {:?} cut at {cuts:?}, max_head {max_head}, prefix {n}",
                String::from_utf8_lossy(&data)
            );
        }
        match parse_head(&data, max_head) {
            Ok(Status::Complete(h)) => {
                complete += 1;
                assert!(h.len <= max_head && h.len <= data.len());
                assert_eq!(p.is_head(), h.is_head);
                // The head alone parses the same: nothing after it was looked at.
                assert_eq!(
                    parse_head(&data[..h.len], max_head),
                    Ok(Status::Complete(h))
                );
            }
            Ok(Status::Partial) => partial += 1,
            Err(e) => {
                errors += 1;
                if !kinds.contains(&e) {
                    kinds.push(e);
                }
            }
        }
    }
    // The generator reaches every outcome.
    assert!(complete > 4_000 && partial > 100 && errors > 4_000);
    assert_eq!(kinds.len(), 16, "{kinds:?}");
}
