//! Arbitrary bytes, split at fuzzer-chosen points, through the request path: no panic,
//! and the pieces give exactly the responses and final state of the whole stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrypt_server::http::{ResponseSpec, Templates};
use vrypt_server::metrics::{Snapshot, WorkerCounters};
use vrypt_server::server::conn::{process, Ctx, Phase};

fn feed(data: &[u8], cuts: &[usize], max_head: usize) -> (Vec<u8>, Phase, Vec<u8>, Snapshot) {
    let templates = Templates::new(&ResponseSpec::default(), 0);
    let counters = [WorkerCounters::default()];
    let mut out = Vec::new();
    let mut phase = Phase::Head;
    let mut pending = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        pending.extend_from_slice(&data[start..end]);
        start = end;
        let mut ctx = Ctx {
            templates: &templates,
            out: &mut out,
            counters: &counters[0],
            max_head,
            draining: false,
            unclean_close: false,
        };
        let used = process(&mut phase, &pending, &mut ctx);
        pending.drain(..used);
        assert!(pending.len() <= max_head);
    }
    (out, phase, pending, Snapshot::sum(&counters))
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many cut points; next bytes: where; the rest is the stream.
    let Some((&n, rest)) = input.split_first() else { return };
    let n = usize::from(n % 8).min(rest.len());
    let (cut_bytes, data) = rest.split_at(n);
    let mut cuts: Vec<usize> = cut_bytes.iter().map(|&b| usize::from(b) * data.len() / 256).collect();
    cuts.sort_unstable();
    let max_head = if n % 2 == 0 { 8192 } else { 64 };
    assert_eq!(feed(data, &[], max_head), feed(data, &cuts, max_head));
});
