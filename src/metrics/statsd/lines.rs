//! What one flush sends, without I/O: the counter deltas since the previous
//! flush, the StatsD lines they become (values, names, DogStatsD tags), and the
//! packing of those lines into datagrams.

use std::fmt::Write as _;
use std::time::Duration;

use crate::metrics::Snapshot;

/// Builds the `|#k:v,k2:v2` suffix for DogStatsD tags; empty when there are none.
pub(crate) fn tag_suffix(tags: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        s.push_str(if i == 0 { "|#" } else { "," });
        s.push_str(k);
        if !v.is_empty() {
            s.push(':');
            s.push_str(v);
        }
    }
    s
}

/// Formats a gauge value: an integer when whole, else at most two decimals.
pub(crate) fn format_value(v: f64) -> String {
    if !v.is_finite() || v <= 0.0 {
        // A leading sign would make StatsD treat a gauge as a relative change.
        return "0".to_string();
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Requests per second: `delta` requests over `elapsed`.
pub(crate) fn rate(delta: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        delta as f64 / secs
    }
}

/// Which load-shaping metrics a flush carries: only those configured, so that a
/// server without `--fault` or `--status-mix` sends exactly the base set.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shaping<'a> {
    pub(crate) faults: bool,
    pub(crate) mix: &'a [u16],
    /// `--delay` is on: send `delayed` and `delay_us` counters.
    pub(crate) delay: bool,
}

/// The StatsD lines of one flush, without line terminators.
///
/// `delta` holds the counter changes since the previous flush, `elapsed` the
/// time they cover, `open` the current number of open connections, `tags` the
/// output of [`tag_suffix`].
pub(crate) fn format_lines(
    prefix: &str,
    tags: &str,
    delta: &Snapshot,
    elapsed: Duration,
    open: u64,
    shaping: Shaping<'_>,
) -> Vec<String> {
    let counters: [(&str, u64); 11] = [
        ("requests", delta.requests),
        ("responses.2xx", delta.responses_2xx),
        ("responses.3xx", delta.responses_3xx),
        ("responses.4xx", delta.responses_4xx),
        ("responses.5xx", delta.responses_5xx),
        ("bytes_sent", delta.bytes_sent),
        ("connections.accepted", delta.connections_accepted),
        ("connections.closed", delta.connections_closed),
        ("timeouts", delta.timeouts),
        ("parse_errors", delta.parse_errors),
        ("accept_errors", delta.accept_errors),
    ];
    let mut lines = Vec::with_capacity(counters.len() + 2);
    lines.push(line(
        prefix,
        "rps",
        &format_value(rate(delta.requests, elapsed)),
        "g",
        tags,
    ));
    for (name, value) in counters {
        lines.push(line(prefix, name, &value.to_string(), "c", tags));
    }
    if shaping.faults {
        for (name, value) in [
            ("faults.reset", delta.faults_reset),
            ("faults.close", delta.faults_close),
            ("faults.stall", delta.faults_stall),
        ] {
            lines.push(line(prefix, name, &value.to_string(), "c", tags));
        }
    }
    if shaping.delay {
        lines.push(line(
            prefix,
            "delayed",
            &delta.delayed.to_string(),
            "c",
            tags,
        ));
        lines.push(line(
            prefix,
            "delay_us",
            &delta.delay_us.to_string(),
            "c",
            tags,
        ));
    }
    for (status, n) in shaping.mix.iter().zip(delta.mixed) {
        let name = format!("responses.status.{status}");
        lines.push(line(prefix, &name, &n.to_string(), "c", tags));
    }
    lines.push(line(
        prefix,
        "connections.open",
        &open.to_string(),
        "g",
        tags,
    ));
    lines
}

fn line(prefix: &str, name: &str, value: &str, kind: &str, tags: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len() + value.len() + tags.len() + 8);
    if !prefix.is_empty() {
        s.push_str(prefix);
        s.push('.');
    }
    // Writing into a String cannot fail.
    let _ = write!(s, "{name}:{value}|{kind}{tags}");
    s
}

/// Length of the longest line [`format_lines`] can produce for this prefix and tags.
pub(crate) fn longest_line(prefix: &str, tags: &str) -> usize {
    let max = Snapshot {
        requests: u64::MAX,
        responses_2xx: u64::MAX,
        responses_3xx: u64::MAX,
        responses_4xx: u64::MAX,
        responses_5xx: u64::MAX,
        bytes_sent: u64::MAX,
        connections_accepted: u64::MAX,
        connections_closed: u64::MAX,
        timeouts: u64::MAX,
        parse_errors: u64::MAX,
        accept_errors: u64::MAX,
        faults_reset: u64::MAX,
        faults_close: u64::MAX,
        faults_stall: u64::MAX,
        mixed: [u64::MAX; crate::http::response::MAX_MIX],
        delayed: u64::MAX,
        delay_us: u64::MAX,
    };
    format_lines(
        prefix,
        tags,
        &max,
        Duration::from_nanos(1),
        u64::MAX,
        Shaping {
            faults: true,
            mix: &[599],
            delay: true,
        },
    )
    .iter()
    .map(String::len)
    .max()
    .unwrap_or(0)
}

/// Packs lines into datagrams of at most `max` bytes, lines separated by `\n`.
///
/// Order is kept. A line longer than `max` on its own is dropped
/// ([`spawn`](super::spawn) makes sure this cannot happen with real metrics).
pub(crate) fn pack(lines: &[String], max: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(max);
    for l in lines {
        if l.len() > max {
            continue;
        }
        let need = if cur.is_empty() {
            l.len()
        } else {
            cur.len() + 1 + l.len()
        };
        if need > max {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(max)));
        }
        if !cur.is_empty() {
            cur.push(b'\n');
        }
        cur.extend_from_slice(l.as_bytes());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Field-by-field `now - before`, wrapping like the counters themselves.
pub(crate) fn delta(now: &Snapshot, before: &Snapshot) -> Snapshot {
    Snapshot {
        requests: now.requests.wrapping_sub(before.requests),
        responses_2xx: now.responses_2xx.wrapping_sub(before.responses_2xx),
        responses_3xx: now.responses_3xx.wrapping_sub(before.responses_3xx),
        responses_4xx: now.responses_4xx.wrapping_sub(before.responses_4xx),
        responses_5xx: now.responses_5xx.wrapping_sub(before.responses_5xx),
        bytes_sent: now.bytes_sent.wrapping_sub(before.bytes_sent),
        connections_accepted: now
            .connections_accepted
            .wrapping_sub(before.connections_accepted),
        connections_closed: now
            .connections_closed
            .wrapping_sub(before.connections_closed),
        timeouts: now.timeouts.wrapping_sub(before.timeouts),
        parse_errors: now.parse_errors.wrapping_sub(before.parse_errors),
        accept_errors: now.accept_errors.wrapping_sub(before.accept_errors),
        faults_reset: now.faults_reset.wrapping_sub(before.faults_reset),
        faults_close: now.faults_close.wrapping_sub(before.faults_close),
        faults_stall: now.faults_stall.wrapping_sub(before.faults_stall),
        mixed: std::array::from_fn(|i| now.mixed[i].wrapping_sub(before.mixed[i])),
        delayed: now.delayed.wrapping_sub(before.delayed),
        delay_us: now.delay_us.wrapping_sub(before.delay_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::statsd::MAX_DATAGRAM;

    fn snap(requests: u64) -> Snapshot {
        Snapshot {
            requests,
            responses_2xx: requests,
            bytes_sent: requests.wrapping_mul(100),
            ..Snapshot::default()
        }
    }

    #[test]
    fn lines_have_every_metric_in_order() {
        let lines = format_lines(
            "vrypt",
            "",
            &snap(50),
            Duration::from_millis(500),
            3,
            Shaping::default(),
        );
        assert_eq!(
            lines,
            [
                "vrypt.rps:100|g",
                "vrypt.requests:50|c",
                "vrypt.responses.2xx:50|c",
                "vrypt.responses.3xx:0|c",
                "vrypt.responses.4xx:0|c",
                "vrypt.responses.5xx:0|c",
                "vrypt.bytes_sent:5000|c",
                "vrypt.connections.accepted:0|c",
                "vrypt.connections.closed:0|c",
                "vrypt.timeouts:0|c",
                "vrypt.parse_errors:0|c",
                "vrypt.accept_errors:0|c",
                "vrypt.connections.open:3|g",
            ]
        );
        let mut mixed = snap(3);
        mixed.mixed[1] = 2;
        let shaping = Shaping {
            faults: true,
            mix: &[200, 503],
            delay: true,
        };
        let lines = format_lines("v", "", &mixed, Duration::from_secs(1), 0, shaping);
        assert!(lines.contains(&"v.faults.stall:0|c".to_string()));
        assert!(lines.contains(&"v.responses.status.200:0|c".to_string()));
        assert!(lines.contains(&"v.responses.status.503:2|c".to_string()));
    }

    #[test]
    fn tags_and_empty_prefix() {
        let tags = tag_suffix(&[
            ("env".into(), "prod".into()),
            ("az".into(), "b".into()),
            ("canary".into(), String::new()),
        ]);
        assert_eq!(tags, "|#env:prod,az:b,canary");
        let lines = format_lines(
            "",
            &tags,
            &snap(1),
            Duration::from_secs(1),
            0,
            Shaping::default(),
        );
        assert_eq!(lines[0], "rps:1|g|#env:prod,az:b,canary");
        assert_eq!(lines[12], "connections.open:0|g|#env:prod,az:b,canary");
        assert_eq!(tag_suffix(&[]), "");
    }

    #[test]
    fn gauge_values() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(1.0 / 3.0), "0.33");
        assert_eq!(format_value(-1.0), "0");
        assert_eq!(format_value(f64::NAN), "0");
        assert_eq!(format_value(f64::INFINITY), "0");
        assert_eq!(format_value(1e9), "1000000000");
        assert_eq!(rate(7, Duration::ZERO), 0.0);
        assert_eq!(rate(300, Duration::from_millis(1500)), 200.0);
    }

    #[test]
    fn deltas_wrap() {
        let before = Snapshot {
            requests: u64::MAX - 1,
            ..snap(0)
        };
        let now = Snapshot {
            requests: 3,
            ..snap(0)
        };
        assert_eq!(delta(&now, &before).requests, 5);
        assert_eq!(delta(&snap(10), &snap(4)), snap(6));
    }

    #[test]
    fn packing_respects_the_limit_and_keeps_every_line() {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("vrypt.metric_{i}:{}|c", i * 7919))
            .collect();
        let packets = pack(&lines, MAX_DATAGRAM);
        assert!(packets.len() > 1);
        for p in &packets {
            assert!(p.len() <= MAX_DATAGRAM, "{} bytes", p.len());
            assert!(!p.ends_with(b"\n") && !p.starts_with(b"\n"));
        }
        let joined: Vec<String> = packets
            .iter()
            .flat_map(|p| {
                std::str::from_utf8(p)
                    .unwrap()
                    .split('\n')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(joined, lines);
        // Packets are filled: each one but the last could not take the next line.
        let mut idx = 0;
        for p in &packets[..packets.len() - 1] {
            idx += p.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(p.len() + 1 + lines[idx].len() > MAX_DATAGRAM);
        }
    }

    #[test]
    fn packing_edge_cases() {
        assert!(pack(&[], 10).is_empty());
        let exact = vec!["a".repeat(10)];
        assert_eq!(pack(&exact, 10), vec![b"aaaaaaaaaa".to_vec()]);
        let two = vec!["abcd".to_string(), "efgh".to_string()];
        assert_eq!(pack(&two, 9), vec![b"abcd\nefgh".to_vec()]);
        assert_eq!(pack(&two, 8), vec![b"abcd".to_vec(), b"efgh".to_vec()]);
        // Longer than a datagram: dropped rather than sent oversize.
        let long = vec!["x".repeat(11), "ok".to_string()];
        assert_eq!(pack(&long, 10), vec![b"ok".to_vec()]);
    }

    #[test]
    fn one_flush_fits_one_datagram() {
        let lines = format_lines(
            "vrypt",
            "",
            &snap(u64::MAX),
            Duration::from_nanos(1),
            u64::MAX,
            Shaping::default(),
        );
        assert_eq!(pack(&lines, MAX_DATAGRAM).len(), 1);
        assert!(longest_line("vrypt", "") < 60);
        let tags = tag_suffix(&[("k".into(), "v".repeat(1400))]);
        assert!(longest_line("vrypt", &tags) > MAX_DATAGRAM);
    }
}
