//! Arbitrary bytes, split at fuzzer-chosen points, through the request path: no panic,
//! and the pieces give exactly the responses and final state of the whole stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrypt_server::testing::replay;

fuzz_target!(|input: &[u8]| {
    // First byte: how many cut points; next bytes: where; the rest is the stream.
    let Some((&n, rest)) = input.split_first() else { return };
    let n = usize::from(n % 8).min(rest.len());
    let (cut_bytes, data) = rest.split_at(n);
    let mut cuts: Vec<usize> = cut_bytes.iter().map(|&b| usize::from(b) * data.len() / 256).collect();
    cuts.sort_unstable();
    let max_head = if n % 2 == 0 { 8192 } else { 64 };
    assert_eq!(replay(data, &[], max_head), replay(data, &cuts, max_head));
});
