//! The Prometheus text exposition (format 0.0.4) of the counters, built only when
//! `/metrics` is scraped on the admin listener.

use super::Snapshot;
use std::fmt::Write;

/// `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the exposition reports besides the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Process<'a> {
    /// Not shutting down.
    pub(crate) ready: bool,
    /// When the process started, in seconds since the Unix epoch.
    pub(crate) start_time: f64,
    /// The statuses of `--status-mix`, in order.
    pub(crate) mix: &'a [u16],
    /// `--fault` is on (its counters are shown only then).
    pub(crate) faults: bool,
    /// `--delay` is on (its counters are shown only then).
    pub(crate) delay: bool,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The whole exposition for the counters summed over every worker.
pub(crate) fn render(s: &Snapshot, p: Process<'_>) -> String {
    let mut out = String::with_capacity(2048);
    sample(
        &mut out,
        "vrypt_requests_total",
        "counter",
        "Requests on the serving port whose head was parsed completely, any status.",
        s.requests,
    );
    family(
        &mut out,
        "vrypt_responses_total",
        "counter",
        "Responses sent on the serving port, by status class.",
    );
    for (class, n) in [
        ("2xx", s.responses_2xx),
        ("3xx", s.responses_3xx),
        ("4xx", s.responses_4xx),
        ("5xx", s.responses_5xx),
    ] {
        let _ = writeln!(out, "vrypt_responses_total{{class=\"{class}\"}} {n}");
    }
    let counters = [
        (
            "vrypt_sent_bytes_total",
            "Bytes written to clients of the serving port.",
            s.bytes_sent,
        ),
        (
            "vrypt_connections_accepted_total",
            "Connections accepted on the serving port.",
            s.connections_accepted,
        ),
        (
            "vrypt_connections_closed_total",
            "Connections on the serving port closed, by either side.",
            s.connections_closed,
        ),
        (
            "vrypt_parse_errors_total",
            "Requests refused as malformed (400, 414, 431, 501, 505).",
            s.parse_errors,
        ),
        (
            "vrypt_timeouts_total",
            "Connections whose header, body, idle, write or linger deadline passed.",
            s.timeouts,
        ),
        (
            "vrypt_accept_errors_total",
            "accept() calls that failed (for example out of file descriptors).",
            s.accept_errors,
        ),
    ];
    for (name, help, value) in counters {
        sample(&mut out, name, "counter", help, value);
    }
    if p.faults {
        family(
            &mut out,
            "vrypt_faults_total",
            "counter",
            "Requests answered with an injected fault (--fault), by kind.",
        );
        for (kind, n) in [
            ("reset", s.faults_reset),
            ("close", s.faults_close),
            ("stall", s.faults_stall),
        ] {
            let _ = writeln!(out, "vrypt_faults_total{{kind=\"{kind}\"}} {n}");
        }
    }
    if p.delay {
        sample(
            &mut out,
            "vrypt_delayed_requests_total",
            "counter",
            "Requests whose answer waited for --delay.",
            s.delayed,
        );
        family(
            &mut out,
            "vrypt_delay_seconds_total",
            "counter",
            "Sum of the delays given by --delay, in seconds.",
        );
        let _ = writeln!(
            out,
            "vrypt_delay_seconds_total {:.6}",
            s.delay_us as f64 / 1e6
        );
    }
    if !p.mix.is_empty() {
        family(
            &mut out,
            "vrypt_mixed_responses_total",
            "counter",
            "Responses of each status drawn by --status-mix.",
        );
        for (status, n) in p.mix.iter().zip(s.mixed) {
            let _ = writeln!(
                out,
                "vrypt_mixed_responses_total{{status=\"{status}\"}} {n}"
            );
        }
    }
    sample(
        &mut out,
        "vrypt_connections_open",
        "gauge",
        "Connections open on the serving port.",
        s.connections_open(),
    );
    sample(
        &mut out,
        "vrypt_ready",
        "gauge",
        "1 while serving, 0 once shutdown has started.",
        u64::from(p.ready),
    );
    family(
        &mut out,
        "vrypt_build_info",
        "gauge",
        "The running version; always 1.",
    );
    let _ = writeln!(
        out,
        "vrypt_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let _ = writeln!(out, "process_start_time_seconds {:.3}", p.start_time);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_samples() {
        let s = Snapshot {
            requests: 7,
            responses_4xx: 5,
            responses_2xx: 2,
            connections_accepted: 3,
            connections_closed: 1,
            ..Snapshot::default()
        };
        let text = render(
            &s,
            Process {
                ready: false,
                start_time: 1.5e9,
                mix: &[200, 503],
                faults: true,
                delay: true,
            },
        );
        assert!(text.contains("vrypt_requests_total 7\n"));
        assert!(text.contains("vrypt_responses_total{class=\"4xx\"} 5\n"));
        assert!(text.contains("vrypt_responses_total{class=\"3xx\"} 0\n"));
        assert!(text.contains("vrypt_connections_open 2\n"));
        assert!(text.contains("vrypt_ready 0\n"));
        assert!(text.contains("process_start_time_seconds 1500000000.000\n"));
        let mut families = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families += 1;
                let name = rest.split(' ').next().unwrap();
                assert!(text.contains(&format!("# HELP {name} ")), "{name}");
                assert!(
                    text.lines()
                        .any(|l| !l.starts_with('#') && l.starts_with(name)),
                    "{name} has no sample"
                );
            }
        }
        assert_eq!(families, 16);
        assert!(text.contains("vrypt_delay_seconds_total 0.000000\n"));
        assert!(text.contains("vrypt_faults_total{kind=\"stall\"} 0\n"));
        assert!(text.contains("vrypt_mixed_responses_total{status=\"503\"} 0\n"));
        assert!(text.ends_with('\n'));
    }
}
