//! Parsers for single option values. Each returns a message that completes the
//! sentence "invalid value for --flag: ...".

use crate::http::chars::{is_field_value, is_token};
use std::net::SocketAddr;
use std::time::Duration;

/// `10`, `10s`, `500ms`, `2m`, `1h`, `1.5s`. Plain numbers are seconds.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 10s, 500ms, 2m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use ms, s, m or h)"
            ))
        }
    };
    let secs = n * scale;
    if !(secs.is_finite() && (0.0..=86_400.0 * 365.0).contains(&secs)) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration that must be at least `min`.
pub(crate) fn duration_at_least(s: &str, min: Duration) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < min {
        return Err(format!(
            "'{s}' is shorter than the minimum of {}ms",
            min.as_millis()
        ));
    }
    Ok(d)
}

/// An integer within `lo..=hi`.
pub(crate) fn integer<T>(s: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match s.trim().parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(format!("'{s}' is not a whole number from {lo} to {hi}")),
    }
}

/// A TCP port, 0 to 65535 (0 asks the kernel for a free port).
pub(crate) fn port(s: &str) -> Result<u16, String> {
    integer::<u16>(s, 0, u16::MAX)
}

/// `ADDR:PORT`, with IPv6 addresses in brackets: `0.0.0.0:8080`, `[::1]:8080`.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!("'{s}' is not ADDR:PORT (examples: 0.0.0.0:8080, [::]:8080, 127.0.0.1:80)")
    })
}

/// `true/false`, `1/0`, `yes/no`, `on/off`.
pub(crate) fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean (use true or false)")),
    }
}

/// Headers the server writes itself; setting them would break framing or duplicate them.
const MANAGED: [(&str, &str); 5] = [
    ("content-length", "it is computed from the body"),
    ("transfer-encoding", "the body is sent with Content-Length"),
    ("connection", "the server manages persistence"),
    ("date", "the server sends the current date"),
    ("content-type", "use --content-type"),
];

/// `Name: value`, with a token name and a value free of CR, LF, NUL and other controls.
pub(crate) fn header(s: &str, server_header: bool) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not 'Name: value'"))?;
    if !is_token(name.as_bytes()) {
        return Err(format!("'{name}' is not a valid header name"));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if !is_field_value(value.as_bytes()) {
        return Err(format!(
            "the value of header '{name}' contains CR, LF, NUL or another control character"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, why)) = MANAGED.iter().find(|(n, _)| *n == lower) {
        return Err(format!("header '{name}' cannot be set: {why}"));
    }
    if lower == "server" && server_header {
        return Err(
            "header 'Server' is already sent: add --no-server-header to replace it".to_string(),
        );
    }
    Ok((name.to_string(), value.to_string()))
}

/// A media type for `Content-Type`: printable, no CR/LF.
pub(crate) fn content_type(s: &str) -> Result<String, String> {
    if s.is_empty() || !is_field_value(s.as_bytes()) {
        return Err(format!("'{s}' is not a valid Content-Type value"));
    }
    Ok(s.to_string())
}

/// A final status code, 200 to 599.
pub(crate) fn status(s: &str) -> Result<u16, String> {
    integer::<u16>(s, 200, 599)
}

/// A request path for `--health-path`: starts with `/`, visible ASCII, no query or
/// fragment (the query of a request is ignored when matching).
pub(crate) fn health_path(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/')
        && s.len() <= 1024
        && s.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'?' && b != b'#');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "'{s}' is not a path (it must start with '/', without spaces, '?' or '#')"
        ))
    }
}

/// `ADDR:PORT`, or `off` for none.
pub(crate) fn optional_socket_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "off" | "none" | "disabled" => Ok(None),
        _ => socket_addr(s).map(Some),
    }
}

/// A number of percent (`0.1%`) or a fraction (`0.001`), from 0 to 1.
fn probability(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 0.01),
        None => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a probability (examples: 0.1%, 0.001)"))?;
    let p = v * scale;
    if !(0.0..=1.0).contains(&p) || !p.is_finite() {
        return Err(format!("'{s}' is not between 0% and 100%"));
    }
    Ok(p)
}

/// `200=98,503=1.5,500=0.5`: statuses 200-599 with positive weights (any scale).
pub(crate) fn status_mix(s: &str) -> Result<Vec<(u16, f64)>, String> {
    let mut out: Vec<(u16, f64)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (code, weight) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not STATUS=WEIGHT (example: 503=1.5)"))?;
        let code = status(code).map_err(|e| format!("in '{item}': {e}"))?;
        let weight: f64 = weight
            .trim()
            .trim_end_matches('%')
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| format!("in '{item}': the weight is not a number >= 0"))?;
        if out.iter().any(|(c, _)| *c == code) {
            return Err(format!("status {code} is given twice"));
        }
        out.push((code, weight));
    }
    if out.is_empty() || out.iter().all(|(_, w)| *w == 0.0) {
        return Err(format!("'{s}' gives no status a weight above 0"));
    }
    if out.len() > crate::http::response::MAX_MIX {
        return Err(format!(
            "at most {} statuses can be mixed",
            crate::http::response::MAX_MIX
        ));
    }
    Ok(out)
}

/// The probability of each kind of injected fault, per request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct FaultRates {
    pub(crate) reset: f64,
    pub(crate) close: f64,
    pub(crate) stall: f64,
}

impl FaultRates {
    pub(crate) fn any(&self) -> bool {
        self.reset + self.close + self.stall > 0.0
    }
}

/// `reset=0.1%,close=0.2%,stall=0.05%` (each kind at most once; together at most 100%).
pub(crate) fn faults(s: &str) -> Result<FaultRates, String> {
    let mut r = FaultRates::default();
    let mut seen = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (kind, p) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not KIND=PROBABILITY (example: reset=0.1%)"))?;
        let kind = kind.trim().to_ascii_lowercase();
        if seen.contains(&kind) {
            return Err(format!("'{kind}' is given twice"));
        }
        let p = probability(p).map_err(|e| format!("in '{item}': {e}"))?;
        match kind.as_str() {
            "reset" => r.reset = p,
            "close" => r.close = p,
            "stall" => r.stall = p,
            other => {
                return Err(format!(
                    "unknown fault '{other}' (use reset, close or stall)"
                ))
            }
        }
        seen.push(kind);
    }
    if r.reset + r.close + r.stall > 1.0 + 1e-9 {
        return Err("the fault probabilities add up to more than 100%".to_string());
    }
    Ok(r)
}

/// A byte size: `512`, `64KiB`, `10MiB`, `1GiB` (also `KB`/`MB`/`GB` = powers of
/// 1000, and `K`/`M`/`G` = powers of 1024), from 1 byte to 1 GiB.
pub(crate) fn size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 64KiB, 10MiB, 1GiB)"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KiB" | "k" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use B, KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = (n * scale).round();
    if !(1.0..=(1u64 << 30) as f64).contains(&bytes) {
        return Err(format!("'{s}' is not between 1 byte and 1 GiB"));
    }
    Ok(bytes as usize)
}

/// `k:v,k2:v2` DogStatsD tags.
pub(crate) fn tags(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v) = item.split_once(':').unwrap_or((item, ""));
        let ok = |t: &str| {
            t.bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'|' | b'#' | b',' | b'@'))
        };
        if k.is_empty() || !ok(k) || !ok(v) {
            return Err(format!("'{item}' is not a tag of the form key:value"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A StatsD metric prefix: letters, digits, `.`, `_` and `-`.
pub(crate) fn prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !s.starts_with('.')
        && !s.ends_with('.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "'{s}' is not a metric prefix (letters, digits, '.', '_', '-')"
        ))
    }
}

/// `host:port` for StatsD; the host may be a name or an IP (IPv6 in brackets).
pub(crate) fn host_port(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (host, port_str) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not HOST:PORT"))?;
    integer::<u16>(port_str, 1, u16::MAX).map_err(|_| format!("'{s}' has an invalid port"))?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if host_ok {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not HOST:PORT"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(duration("ten").is_err());
        assert!(duration("5d").is_err());
        assert!(duration("-1").is_err());
        // Exactly what the chart's schema accepts: no spaces.
        assert!(duration(" 10s").is_err() && duration("10 s").is_err());
        assert_eq!(duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1."), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn headers() {
        assert_eq!(header("X-A:  b c ", true), Ok(("X-A".into(), "b c".into())));
        assert!(header("X A: b", true).is_err());
        assert!(header("X-A: b\r\nEvil: 1", true).is_err());
        assert!(header("Content-Length: 3", true).is_err());
        assert!(header("Server: x", true).is_err());
        assert!(header("Server: x", false).is_ok());
        assert!(header("no colon", true).is_err());
    }

    #[test]
    fn misc() {
        assert_eq!(
            tags("env:prod, az:1a"),
            Ok(vec![
                ("env".into(), "prod".into()),
                ("az".into(), "1a".into())
            ])
        );
        assert!(tags("a|b:c").is_err());
        assert!(host_port("graphite:8125").is_ok());
        assert!(host_port("[::1]:8125").is_ok());
        assert!(host_port("graphite").is_err());
        assert!(status("199").is_err() && status("204").is_ok());
        assert_eq!(socket_addr("[::1]:80").map(|a| a.port()), Ok(80));
        assert_eq!(health_path("/healthz"), Ok("/healthz".into()));
        for bad in ["healthz", "/a b", "/a?b", "", "/\u{e9}"] {
            assert!(health_path(bad).is_err(), "{bad}");
        }
        assert_eq!(optional_socket_addr("off"), Ok(None));
        assert_eq!(
            status_mix("200=98, 503=1.5,500=0.5"),
            Ok(vec![(200, 98.0), (503, 1.5), (500, 0.5)])
        );
        for bad in [
            "",
            "200",
            "199=1",
            "200=x",
            "200=-1",
            "200=1,200=2",
            "200=0",
        ] {
            assert!(status_mix(bad).is_err(), "{bad}");
        }
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("64KiB"), Ok(65536));
        assert_eq!(size("1.5K"), Ok(1536));
        assert_eq!(size("10MB"), Ok(10_000_000));
        for bad in ["0", "2GiB", "1TB", "x", "-1"] {
            assert!(size(bad).is_err(), "{bad}");
        }
        let f = faults("reset=0.1%,close=0.002, stall=0.05%").unwrap();
        assert!((f.reset - 0.001).abs() < 1e-12 && (f.close - 0.002).abs() < 1e-12);
        assert!((f.stall - 0.0005).abs() < 1e-12);
        for bad in [
            "reset",
            "boom=1%",
            "reset=101%",
            "reset=60%,close=50%",
            "reset=1,reset=0",
        ] {
            assert!(faults(bad).is_err(), "{bad}");
        }
        assert!(optional_socket_addr("[::]:9901").unwrap().is_some());
    }
}
