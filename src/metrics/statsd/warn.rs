//! Rate limiting of the pusher's warnings: one per period, the rest counted.

use std::time::{Duration, Instant};

/// Lets one warning through per period and counts the rest.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter that lets one warning through per `period`.
    pub(crate) fn new(period: Duration) -> WarnLimiter {
        WarnLimiter {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a warning may be printed now, `n` being how many were
    /// suppressed since the last one printed; `None` when this one is suppressed.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::new(Duration::from_secs(60));
        assert_eq!(w.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(w.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(w.allow(t0 + Duration::from_secs(61)), Some(5));
        assert_eq!(w.allow(t0 + Duration::from_secs(62)), None);
        assert_eq!(w.allow(t0 + Duration::from_secs(200)), Some(1));
    }
}
