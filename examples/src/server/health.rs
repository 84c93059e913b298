//! `/healthz`: the seed's incident thresholds over a sliding window.
//!
//! - delivery failures: refused sends / all sends > 5 %;
//! - connection drop rate: connections the server had to drop (slow
//!   consumer, idle timeout, forced close, protocol error, too big) /
//!   connections opened > 10 %;
//! - critical (agent) event delivery failures: failed / all agent events > 2 %.
//!
//! A rate is judged only once its window holds at least [`MIN_SAMPLES`]
//! events, so one early failure cannot flip the server to unhealthy.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use userlane_smol::ServerStats;

use super::agent::AgentStats;

/// Events a window must hold before its rate counts.
pub const MIN_SAMPLES: u64 = 20;
/// Window length.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The counters the thresholds look at, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Sends accepted.
    pub sends_ok: u64,
    /// Sends refused.
    pub sends_failed: u64,
    /// Connections opened.
    pub opened: u64,
    /// Connections the server dropped.
    pub dropped: u64,
    /// Agent events delivered or buffered.
    pub agent_ok: u64,
    /// Agent events that reached nobody.
    pub agent_failed: u64,
}

impl Sample {
    /// Reads the counters.
    pub fn of(stats: &ServerStats, agent: &AgentStats) -> Self {
        Sample {
            sends_ok: stats.core.sends_accepted,
            sends_failed: stats.core.sends_refused,
            opened: stats.core.total_connections_managed,
            dropped: stats.core.closed_slow_consumer
                + stats.core.closed_idle_timeout
                + stats.forced_closes
                + stats.closed_protocol_error
                + stats.closed_message_too_big
                + stats.closed_invalid_utf8,
            agent_ok: agent.events_sent.load(Ordering::Relaxed),
            agent_failed: agent.events_failed.load(Ordering::Relaxed),
        }
    }
}

fn rate(bad: u64, total: u64) -> Option<f64> {
    (total >= MIN_SAMPLES).then(|| bad as f64 / total as f64)
}

/// Judges the change between `old` and `new`: `Err` names every tripped threshold.
pub fn judge(old: &Sample, new: &Sample) -> Result<(), String> {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let failed = d(new.sends_failed, old.sends_failed);
    let sends = failed + d(new.sends_ok, old.sends_ok);
    let dropped = d(new.dropped, old.dropped);
    let opened = d(new.opened, old.opened);
    let agent_failed = d(new.agent_failed, old.agent_failed);
    let agent = agent_failed + d(new.agent_ok, old.agent_ok);
    let mut reasons = Vec::new();
    if let Some(r) = rate(failed, sends).filter(|r| *r > 0.05) {
        reasons.push(format!(
            "delivery failures {:.1}% > 5% ({failed} of {sends})",
            r * 100.0
        ));
    }
    if let Some(r) = rate(dropped, opened).filter(|r| *r > 0.10) {
        reasons.push(format!(
            "connection drop rate {:.1}% > 10% ({dropped} of {opened})",
            r * 100.0
        ));
    }
    if let Some(r) = rate(agent_failed, agent).filter(|r| *r > 0.02) {
        reasons.push(format!(
            "critical event failures {:.1}% > 2% ({agent_failed} of {agent})",
            r * 100.0
        ));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// Samples taken over the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct Health {
    samples: Mutex<VecDeque<(Instant, Sample)>>,
}

impl Health {
    /// A window that starts now with every counter at zero, as they are when
    /// the server starts: what happens before the first check is judged too.
    pub fn starting_now() -> Self {
        Health {
            samples: Mutex::new(VecDeque::from([(Instant::now(), Sample::default())])),
        }
    }

    /// Records `sample` and judges it against the oldest one in the window.
    pub fn check(&self, sample: Sample) -> Result<(), String> {
        let now = Instant::now();
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            samples.pop_front();
        }
        if samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            samples.push_back((now, sample));
        }
        let oldest = samples.front().map(|(_, s)| *s).unwrap_or_default();
        judge(&oldest, &sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_trip_only_above_their_rates() {
        let zero = Sample::default();
        let healthy = Sample {
            sends_ok: 96,
            sends_failed: 4,
            opened: 100,
            dropped: 10,
            agent_ok: 98,
            agent_failed: 2,
        };
        assert_eq!(judge(&zero, &healthy), Ok(()));
        let sick = Sample {
            sends_ok: 94,
            sends_failed: 6,
            opened: 100,
            dropped: 11,
            agent_ok: 97,
            agent_failed: 3,
        };
        let err = judge(&zero, &sick).unwrap_err();
        assert!(err.contains("delivery failures 6.0% > 5%"), "{err}");
        assert!(err.contains("connection drop rate 11.0% > 10%"), "{err}");
        assert!(err.contains("critical event failures 3.0% > 2%"), "{err}");
    }

    #[test]
    fn small_windows_are_not_judged() {
        let few = Sample {
            sends_failed: 5,
            sends_ok: 5,
            ..Sample::default()
        };
        assert_eq!(judge(&Sample::default(), &few), Ok(()));
    }

    #[test]
    fn a_window_started_with_the_server_judges_what_came_before_the_first_check() {
        let h = Health::starting_now();
        let incident = Sample {
            sends_ok: 1,
            sends_failed: 24,
            ..Sample::default()
        };
        assert!(h.check(incident).unwrap_err().contains("delivery failures"));
        // Without the starting sample the first check has nothing to compare with.
        assert_eq!(Health::default().check(incident), Ok(()));
    }

    #[test]
    fn the_window_compares_against_its_oldest_sample() {
        let h = Health::default();
        let base = Sample {
            sends_ok: 1000,
            ..Sample::default()
        };
        assert_eq!(h.check(base), Ok(()));
        let later = Sample {
            sends_ok: 1010,
            sends_failed: 20,
            ..base
        };
        assert!(h.check(later).is_err());
    }
}
