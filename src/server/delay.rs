//! `--delay`: how long a response waits after its request head completed, as a
//! fixed time, a uniform range, or a distribution given by its quantiles.

use crate::rng::Rng;

/// Longest delay a spec may give (a delayed response holds its connection).
pub(crate) const MAX_DELAY_US: u64 = 3_600_000_000;

/// A delay distribution, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DelaySpec {
    Fixed(u64),
    /// Uniform in `[lo, hi]`.
    Uniform(u64, u64),
    /// `(quantile, value)` points from `(0, 0)`, increasing in both; piecewise
    /// linear between them, the last value above the last quantile.
    Percentiles(Vec<(f64, f64)>),
}

fn micros(s: &str) -> Result<u64, String> {
    let d = crate::config::values::duration(s.trim())?;
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if us > MAX_DELAY_US {
        return Err(format!("'{s}' is longer than the 1h maximum delay"));
    }
    Ok(us)
}

impl DelaySpec {
    /// `50ms`, `uniform:10ms..200ms`, `percentiles:p50=20ms,p90=60ms,p99=250ms,p100=1s`.
    pub(crate) fn parse(s: &str) -> Result<DelaySpec, String> {
        let s = s.trim();
        if let Some(range) = s.strip_prefix("uniform:") {
            let (lo, hi) = range.split_once("..").ok_or_else(|| {
                format!("'{s}' is not uniform:MIN..MAX (example: uniform:10ms..200ms)")
            })?;
            let (lo, hi) = (micros(lo)?, micros(hi)?);
            if lo > hi {
                return Err(format!("in '{s}' the minimum is above the maximum"));
            }
            return Ok(DelaySpec::Uniform(lo, hi));
        }
        if let Some(list) = s.strip_prefix("percentiles:") {
            let mut points = vec![(0.0, 0.0)];
            for item in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let (p, v) = item
                    .strip_prefix('p')
                    .and_then(|r| r.split_once('='))
                    .ok_or_else(|| format!("'{item}' is not pNN=DURATION (example: p99=250ms)"))?;
                let q: f64 = p
                    .parse()
                    .ok()
                    .filter(|q: &f64| *q > 0.0 && *q <= 100.0)
                    .ok_or_else(|| {
                        format!("'{item}': the percentile is not above 0 and at most 100")
                    })?;
                let v = micros(v)? as f64;
                let &(last_q, last_v) = points.last().unwrap_or(&(0.0, 0.0));
                if q / 100.0 <= last_q || v < last_v {
                    return Err(format!(
                        "'{item}': percentiles must increase, and their values must not decrease"
                    ));
                }
                points.push((q / 100.0, v));
            }
            if points.len() == 1 {
                return Err(format!("'{s}' gives no percentile"));
            }
            return Ok(DelaySpec::Percentiles(points));
        }
        micros(s).map(DelaySpec::Fixed).map_err(|e| {
            format!("{e}; a delay is DURATION, uniform:MIN..MAX or percentiles:p50=D,p99=D,...")
        })
    }

    /// Whether every delay is zero.
    pub(crate) fn is_zero(&self) -> bool {
        matches!(self, DelaySpec::Fixed(0) | DelaySpec::Uniform(0, 0))
    }

    /// One delay, in microseconds.
    #[inline]
    pub(crate) fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            DelaySpec::Fixed(d) => *d,
            DelaySpec::Uniform(lo, hi) => lo + ((hi - lo) as f64 * rng.unit()) as u64,
            DelaySpec::Percentiles(points) => quantile(points, rng.unit()) as u64,
        }
    }
}

/// The value at quantile `u` of the piecewise linear distribution `points`.
fn quantile(points: &[(f64, f64)], u: f64) -> f64 {
    for w in points.windows(2) {
        let ((q0, v0), (q1, v1)) = (w[0], w[1]);
        if u < q1 {
            return v0 + (v1 - v0) * (u - q0) / (q1 - q0);
        }
    }
    points.last().map_or(0.0, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse_with_one_line() {
        assert_eq!(DelaySpec::parse("50ms"), Ok(DelaySpec::Fixed(50_000)));
        assert_eq!(
            DelaySpec::parse("uniform:10ms..200ms"),
            Ok(DelaySpec::Uniform(10_000, 200_000))
        );
        assert!(matches!(
            DelaySpec::parse("percentiles:p50=20ms,p90=60ms,p99=250ms,p100=1s"),
            Ok(DelaySpec::Percentiles(p)) if p.len() == 5
        ));
        for bad in [
            "fast",
            "uniform:10ms",
            "uniform:2s..1s",
            "percentiles:",
            "percentiles:p50=20ms,p40=30ms",
            "percentiles:p50=20ms,p90=10ms",
            "percentiles:p101=1s",
            "percentiles:50=1s",
            "2h",
        ] {
            let e = DelaySpec::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn a_large_seeded_sample_reproduces_the_quantiles_within_1_percent() {
        let spec = DelaySpec::parse("percentiles:p50=20ms,p90=60ms,p99=250ms,p100=1s").unwrap();
        let mut rng = Rng::for_worker(2024, 0);
        let mut v: Vec<u64> = (0..1_000_000).map(|_| spec.sample(&mut rng)).collect();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64;
        for (q, want) in [(0.5, 20_000.0), (0.9, 60_000.0), (0.99, 250_000.0)] {
            assert!(
                (at(q) - want).abs() <= want * 0.01,
                "p{}: {} vs {want}",
                q * 100.0,
                at(q)
            );
        }
        assert!(*v.last().unwrap() <= 1_000_000);
        // Above the highest given quantile: that value.
        let capped = DelaySpec::parse("percentiles:p50=10ms,p90=30ms").unwrap();
        let mut rng = Rng::for_worker(1, 0);
        assert!((0..100_000).all(|_| capped.sample(&mut rng) <= 30_000));
        let u = DelaySpec::parse("uniform:10ms..20ms").unwrap();
        let mean = (0..100_000).map(|_| u.sample(&mut rng)).sum::<u64>() as f64 / 1e5;
        assert!((mean - 15_000.0).abs() < 150.0, "{mean}");
    }
}
