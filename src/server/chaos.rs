//! Behaviour shaped on purpose for load tests: `--status-mix` draws each answer's
//! status by weight and `--fault` replaces answers with a reset, a close or a
//! stall. One draw per request from the worker's generator; nothing is built or
//! allocated per request (every mixed status has precomputed responses).

use crate::config::values::FaultRates;
use crate::http::Family;
use crate::rng::Rng;

/// An injected fault, in place of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The connection is reset (`SO_LINGER` 0, then close): the client sees ECONNRESET.
    Reset,
    /// The connection is closed cleanly (FIN) without a response.
    Close,
    /// No response at all; the connection closes at the idle timeout.
    Stall,
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draw {
    Answer(Family),
    Fault(Fault),
}

/// The weights and probabilities, as cumulative thresholds over `[0, 1)`.
#[derive(Debug, Clone)]
pub(crate) struct Chaos {
    /// Upper bounds of reset, close and stall.
    faults: [f64; 3],
    /// Upper bound of each mixed status (the last is 1); empty without a mix.
    mix: Vec<f64>,
}

impl Chaos {
    /// `None` when there is nothing to draw (the request path then draws nothing).
    pub(crate) fn new(mix: &[(u16, f64)], faults: FaultRates) -> Option<Chaos> {
        if mix.is_empty() && !faults.any() {
            return None;
        }
        let total: f64 = mix.iter().map(|(_, w)| w).sum();
        let mut acc = 0.0;
        let mut bounds: Vec<f64> = mix
            .iter()
            .map(|(_, w)| {
                acc += w / total;
                acc
            })
            .collect();
        if let Some(last) = bounds.last_mut() {
            *last = 1.0;
        }
        let reset = faults.reset;
        let close = reset + faults.close;
        Some(Chaos {
            faults: [reset, close, close + faults.stall],
            mix: bounds,
        })
    }

    /// The same mix without faults (the server drains: no new stall may hold it).
    pub(crate) fn without_faults(mut self) -> Option<Chaos> {
        self.faults = [0.0; 3];
        (!self.mix.is_empty()).then_some(self)
    }

    /// Whether any fault can be drawn.
    pub(crate) fn has_faults(&self) -> bool {
        self.faults[2] > 0.0
    }

    /// One request's outcome.
    #[inline]
    pub(crate) fn draw(&self, rng: &mut Rng) -> Draw {
        if self.faults[2] > 0.0 {
            let u = rng.unit();
            if u < self.faults[2] {
                return Draw::Fault(if u < self.faults[0] {
                    Fault::Reset
                } else if u < self.faults[1] {
                    Fault::Close
                } else {
                    Fault::Stall
                });
            }
        }
        if self.mix.is_empty() {
            return Draw::Answer(Family::CONFIGURED);
        }
        let u = rng.unit();
        let i = self
            .mix
            .partition_point(|&b| b <= u)
            .min(self.mix.len() - 1);
        Draw::Answer(Family::mix(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_weights_and_probabilities() {
        let faults = FaultRates {
            reset: 0.01,
            close: 0.02,
            stall: 0.03,
        };
        let c = Chaos::new(&[(200, 90.0), (503, 9.0), (500, 1.0)], faults).unwrap();
        let mut rng = Rng::for_worker(42, 0);
        let n = 1_000_000;
        let mut counts = [0usize; 6];
        for _ in 0..n {
            let k = match c.draw(&mut rng) {
                Draw::Fault(Fault::Reset) => 3,
                Draw::Fault(Fault::Close) => 4,
                Draw::Fault(Fault::Stall) => 5,
                Draw::Answer(f) if f == Family::mix(0) => 0,
                Draw::Answer(f) if f == Family::mix(1) => 1,
                Draw::Answer(f) if f == Family::mix(2) => 2,
                other => panic!("{other:?}"),
            };
            counts[k] += 1;
        }
        let share = |k: usize| counts[k] as f64 / n as f64;
        let answered = 1.0 - 0.06;
        for (k, want) in [
            (0, 0.90 * answered),
            (1, 0.09 * answered),
            (2, 0.01 * answered),
            (3, 0.01),
            (4, 0.02),
            (5, 0.03),
        ] {
            assert!(
                (share(k) - want).abs() < 0.002,
                "{k}: {} vs {want}",
                share(k)
            );
        }
        assert!(Chaos::new(&[], FaultRates::default()).is_none());
        let only_faults = Chaos::new(&[], faults).unwrap();
        assert!(matches!(
            only_faults.draw(&mut Rng::for_worker(1, 1)),
            Draw::Answer(Family::CONFIGURED) | Draw::Fault(_)
        ));
    }
}
