//! Property test: arbitrary bytes, split at arbitrary points, through the request
//! parser and the request path. Nothing panics, and a stream fed in pieces gives
//! exactly the responses (and the same final state) as the stream fed whole.
//!
//! Inputs come from a seeded generator (reproducible) that mixes well-formed
//! requests, framing headers, chunked bodies, mutations and raw noise.

use vrypt_server::http::{parse_head, Status};
use vrypt_server::testing::{replay, Replay};

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

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
