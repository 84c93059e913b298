//! `/healthz`: the seed's incident thresholds over a sliding window, judged
//! for the service as a whole, never for one user.
//!
//! Over the last [`WINDOW`]:
//!
//! - **delivery failures**: of the distinct users something was sent to
//!   (service API posts and agent events), the share that had at least one
//!   send refused > 5 %;
//! - **critical (agent) event failures**: of the distinct users the agent
//!   sent events to, the share that had at least one event reach nobody > 2 %;
//! - **connection drop rate**: connections the node dropped for reasons of
//!   its own (idle timeout, a handler panic) / connections opened > 10 %.
//!   Closes caused by what a client did or failed to do — 1002 protocol
//!   error, 1007 invalid UTF-8, 1008 policy, 1009 too big, 1013 slow
//!   consumer, and a socket dropped because its peer did not take its close
//!   frame within the close grace — are left out: they are that client's
//!   problem, not the node's;
//! - **memory spike**: resident memory > 200 % (configurable) of the node's
//!   steady baseline (see [`Memory`]).
//!
//! The user shares are judged only once at least [`MIN_USERS`] distinct
//! users were sent to (so one user, however many of their sends fail, is at
//! most one vote, and a handful of users cannot flip the node); the drop
//! rate only once the window holds [`MIN_SAMPLES`] connections opened by at
//! least [`MIN_USERS`] distinct users. The runtime does not tell which user a
//! dropped connection belonged to, so the drop rate stays a ratio of
//! connections: one user contributes at most its connection limit of idle
//! timeouts per idle-timeout period.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use userlane_smol::ServerStats;

/// Connections the window must have seen opened before the drop rate counts.
pub const MIN_SAMPLES: u64 = 20;
/// Distinct users the window must hold before a rate counts.
pub const MIN_USERS: u64 = 10;
/// Window length.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most users [`UserOutcomes`] remembers at once; beyond, new users are
/// not recorded until old ones leave the window (memory stays bounded).
pub const MAX_TRACKED_USERS: usize = 100_000;
/// Default memory threshold: unhealthy above this percentage of the baseline.
pub const DEFAULT_MEMORY_SPIKE_PERCENT: u32 = 200;

/// The connection counters the drop rate looks at, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Connections opened.
    pub opened: u64,
    /// Connections the node dropped for reasons of its own (idle timeout,
    /// handler panic). Forced closes are not among them: the close grace
    /// passes only when a peer does not take its close frame (a client that
    /// does not read, already closed with 1013 or 1008), and the shutdown
    /// deadline only when the node is going away.
    pub dropped: u64,
}

impl Sample {
    /// Reads the counters.
    pub fn of(stats: &ServerStats) -> Self {
        Sample {
            opened: stats.core.total_connections_managed,
            dropped: stats.core.closed_idle_timeout + stats.closed_handler_panic,
        }
    }
}

/// Something that happened to one user, as [`UserOutcomes`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A send to the user was accepted (queued or buffered).
    DeliveryOk,
    /// A send to the user was refused.
    DeliveryFailed,
    /// An agent event reached the user (also a delivery).
    AgentOk,
    /// An agent event reached nobody (also a delivery failure).
    AgentFailed,
    /// The user opened a connection.
    Opened,
}

/// When each kind of outcome last happened to one user.
#[derive(Debug, Clone, Copy, Default)]
struct Last {
    delivery_ok: Option<Instant>,
    delivery_failed: Option<Instant>,
    agent_ok: Option<Instant>,
    agent_failed: Option<Instant>,
    opened: Option<Instant>,
}

impl Last {
    fn latest(&self) -> Option<Instant> {
        [
            self.delivery_ok,
            self.delivery_failed,
            self.agent_ok,
            self.agent_failed,
            self.opened,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// How many distinct users had each outcome in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserCounts {
    /// Users something was sent to.
    pub sent_to: u64,
    /// Of those, users with at least one refused send.
    pub failed: u64,
    /// Users the agent sent events to.
    pub agent: u64,
    /// Of those, users with at least one agent event that reached nobody.
    pub agent_failed: u64,
    /// Users that opened a connection.
    pub opened: u64,
}

/// Per-user outcomes over the last [`WINDOW`], keyed by a keyed hash of
/// the user id: about 100 bytes per user, at most [`MAX_TRACKED_USERS`]
/// users (under 10 MiB).
#[derive(Debug, Default)]
pub struct UserOutcomes {
    users: Mutex<Tracked>,
    keys: RandomState,
}

#[derive(Debug, Default)]
struct Tracked {
    users: HashMap<u64, Last>,
    /// While the table is full of users still in the window, new users are
    /// not recorded and the table is not scanned again before this.
    full_until: Option<Instant>,
}

impl UserOutcomes {
    /// Records `outcome` for `user_id` now.
    pub fn record(&self, user_id: &str, outcome: Outcome) {
        self.record_at(user_id, outcome, Instant::now());
    }

    /// Records `outcome` for `user_id` at `now`.
    pub fn record_at(&self, user_id: &str, outcome: Outcome, now: Instant) {
        let key = self.keys.hash_one(user_id);
        let mut tracked = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if tracked.users.len() >= MAX_TRACKED_USERS && !tracked.users.contains_key(&key) {
            if tracked.full_until.is_some_and(|t| now < t) {
                return;
            }
            prune(&mut tracked.users, now);
            if tracked.users.len() >= MAX_TRACKED_USERS {
                tracked.full_until = Some(now + Duration::from_secs(1));
                return;
            }
        }
        let last = tracked.users.entry(key).or_default();
        match outcome {
            Outcome::DeliveryOk => last.delivery_ok = Some(now),
            Outcome::DeliveryFailed => last.delivery_failed = Some(now),
            Outcome::AgentOk => {
                last.agent_ok = Some(now);
                last.delivery_ok = Some(now);
            }
            Outcome::AgentFailed => {
                last.agent_failed = Some(now);
                last.delivery_failed = Some(now);
            }
            Outcome::Opened => last.opened = Some(now),
        }
    }

    /// Counts the users of the window ending at `now` (and forgets older ones).
    pub fn counts_at(&self, now: Instant) -> UserCounts {
        let mut tracked = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        prune(&mut tracked.users, now);
        let users = &tracked.users;
        let recent = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) <= WINDOW);
        let mut c = UserCounts::default();
        for last in users.values() {
            let failed = recent(last.delivery_failed);
            if failed || recent(last.delivery_ok) {
                c.sent_to += 1;
                c.failed += u64::from(failed);
            }
            let agent_failed = recent(last.agent_failed);
            if agent_failed || recent(last.agent_ok) {
                c.agent += 1;
                c.agent_failed += u64::from(agent_failed);
            }
            c.opened += u64::from(recent(last.opened));
        }
        c
    }
}

fn prune(users: &mut HashMap<u64, Last>, now: Instant) {
    users.retain(|_, last| {
        last.latest()
            .is_some_and(|t| now.duration_since(t) <= WINDOW)
    });
}

fn user_share(reasons: &mut Vec<String>, what: &str, bad: u64, users: u64, limit: f64) {
    if users < MIN_USERS {
        return;
    }
    let share = bad as f64 / users as f64;
    if share > limit {
        reasons.push(format!(
            "{what} {:.1}% of users > {}% ({bad} of {users} users)",
            share * 100.0,
            limit * 100.0
        ));
    }
}

/// Judges the window: `old` and `new` are the connection counters at its
/// start and end, `users` the distinct users in it. `Err` names every
/// tripped threshold.
pub fn judge(old: &Sample, new: &Sample, users: &UserCounts) -> Result<(), String> {
    let mut reasons = Vec::new();
    user_share(
        &mut reasons,
        "delivery failures",
        users.failed,
        users.sent_to,
        0.05,
    );
    let dropped = new.dropped.saturating_sub(old.dropped);
    let opened = new.opened.saturating_sub(old.opened);
    if opened >= MIN_SAMPLES && users.opened >= MIN_USERS {
        let r = dropped as f64 / opened as f64;
        if r > 0.10 {
            reasons.push(format!(
                "connection drop rate {:.1}% > 10% ({dropped} of {opened})",
                r * 100.0
            ));
        }
    }
    user_share(
        &mut reasons,
        "critical event failures",
        users.agent_failed,
        users.agent,
        0.02,
    );
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// The node's resident memory (RSS) in bytes: `VmRSS` of
/// `/proc/self/status` on Linux; `None` (unknown) elsewhere or on error.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The memory threshold, a pure function: `Err` when `resident` is above
/// `limit_percent` % of `baseline`. Unknown figures are never judged.
pub fn judge_memory(
    resident: Option<u64>,
    baseline: Option<u64>,
    limit_percent: u32,
) -> Result<(), String> {
    let (Some(rss), Some(base)) = (resident, baseline) else {
        return Ok(());
    };
    if base == 0 {
        return Ok(());
    }
    let percent = u128::from(rss) * 100 / u128::from(base);
    if u128::from(rss) * 100 > u128::from(base) * u128::from(limit_percent) {
        Err(format!(
            "memory spike {percent}% of baseline > {limit_percent}% ({rss} of {base} bytes resident)"
        ))
    } else {
        Ok(())
    }
}

/// The node's resident memory against its steady baseline.
///
/// The baseline is the largest resident memory seen over the first seconds
/// after the node starts listening ([`Memory::take_baseline_over`], 10 s by
/// default through `--memory-baseline-secs`, sampled every 250 ms): start-up
/// (threads, shards, preallocated tables) is part of it, later growth is
/// what the threshold watches. Until the baseline is taken, and where
/// resident memory is unknown, memory is not judged.
#[derive(Debug)]
pub struct Memory {
    baseline: AtomicU64,
    /// Unhealthy above this percentage of the baseline.
    pub limit_percent: AtomicU32,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            baseline: AtomicU64::new(0),
            limit_percent: AtomicU32::new(DEFAULT_MEMORY_SPIKE_PERCENT),
        }
    }
}

/// Resident memory, its baseline and the threshold, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFigures {
    /// Resident memory now, if known.
    pub resident_bytes: Option<u64>,
    /// The baseline, once taken.
    pub baseline_bytes: Option<u64>,
    /// The threshold in percent of the baseline.
    pub limit_percent: u32,
}

impl Memory {
    /// A memory watch with the given threshold.
    pub fn with_limit(limit_percent: u32) -> Self {
        let m = Memory::default();
        m.limit_percent.store(limit_percent, Ordering::Relaxed);
        m
    }

    /// The baseline, once taken.
    pub fn baseline(&self) -> Option<u64> {
        Some(self.baseline.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }

    /// Sets the baseline (a measured resident size).
    pub fn set_baseline(&self, bytes: u64) {
        self.baseline.store(bytes, Ordering::Relaxed);
    }

    /// Takes the baseline: the largest resident memory sampled every 250 ms
    /// over `period` from now, on a thread of its own.
    pub fn take_baseline_over(self: &Arc<Self>, period: Duration) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("memory-baseline".into())
            .spawn(move || {
                let end = Instant::now() + period;
                let mut most = resident_bytes();
                while Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(250).min(period));
                    most = most.max(resident_bytes());
                }
                match most {
                    Some(b) => {
                        me.set_baseline(b);
                        log::info!("memory baseline: {b} bytes resident");
                    }
                    None => log::info!("resident memory is unknown here: memory is not judged"),
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start the memory baseline thread: {e}");
        }
    }

    /// The figures now.
    pub fn figures(&self) -> MemoryFigures {
        MemoryFigures {
            resident_bytes: resident_bytes(),
            baseline_bytes: self.baseline(),
            limit_percent: self.limit_percent.load(Ordering::Relaxed),
        }
    }
}

/// The verdict of one check: `Err` names every tripped threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Ok`, or the tripped thresholds.
    pub result: Result<(), String>,
    /// The memory figures the verdict used.
    pub memory: MemoryFigures,
}

/// The health window: connection samples over the last [`WINDOW`], per-user
/// outcomes and the memory watch.
#[derive(Debug, Default)]
pub struct Health {
    samples: Mutex<VecDeque<(Instant, Sample)>>,
    /// Per-user outcomes, shared with the agent and the service API.
    pub users: Arc<UserOutcomes>,
    /// The memory watch.
    pub memory: Arc<Memory>,
    /// The last verdict and when it was judged (see [`Health::verdict_at_most_every`]).
    last: Mutex<Option<(Instant, Verdict)>>,
}

impl Health {
    /// The verdict, judged again only if the last one is older than
    /// `every`: `/healthz` answers anyone, and a judgement reads every
    /// shard's counters and scans the per-user table, so a flood of health
    /// checks costs one judgement per `every`, not one per request.
    pub fn verdict_at_most_every(
        &self,
        every: Duration,
        sample: impl FnOnce() -> Sample,
    ) -> Verdict {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, v)) = &*last {
            if now.duration_since(*at) < every {
                return v.clone();
            }
        }
        let v = self.verdict(sample());
        *last = Some((now, v.clone()));
        v
    }

    /// A window that starts now with every counter at zero, as they are when
    /// the server starts: what happens before the first check is judged too.
    pub fn starting_now() -> Self {
        Health {
            samples: Mutex::new(VecDeque::from([(Instant::now(), Sample::default())])),
            ..Health::default()
        }
    }

    /// Records `sample` and judges the window, without memory.
    pub fn check(&self, sample: Sample) -> Result<(), String> {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
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
        drop(samples);
        judge(&oldest, &sample, &self.users.counts_at(now))
    }

    /// [`check`](Self::check) plus the memory threshold.
    pub fn verdict(&self, sample: Sample) -> Verdict {
        let memory = self.memory.figures();
        let mut reasons: Vec<String> = self.check(sample).err().into_iter().collect();
        if let Err(m) = judge_memory(
            memory.resident_bytes,
            memory.baseline_bytes,
            memory.limit_percent,
        ) {
            reasons.push(m);
        }
        Verdict {
            result: if reasons.is_empty() {
                Ok(())
            } else {
                Err(reasons.join("; "))
            },
            memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_dropped_after_the_close_grace_are_not_the_nodes_drops() {
        // A client that floods or stops reading is closed (1008 / 1013) and,
        // if it does not take its close frame, dropped when the grace
        // passes: neither is the node failing its users.
        let mut stats = ServerStats::default();
        stats.core.total_connections_managed = 40;
        stats.core.closed_slow_consumer = 10;
        stats.core.closed_inbound_flood = 10;
        stats.forced_closes = 20;
        stats.core.closed_idle_timeout = 1;
        stats.closed_handler_panic = 1;
        // Panics that closed no connection (on_disconnect, the HTTP
        // service) are not drops.
        stats.handler_panics = 3;
        assert_eq!(
            Sample::of(&stats),
            Sample {
                opened: 40,
                dropped: 2
            }
        );
    }

    fn users(sent_to: u64, failed: u64, agent: u64, agent_failed: u64) -> UserCounts {
        UserCounts {
            sent_to,
            failed,
            agent,
            agent_failed,
            opened: 20,
        }
    }

    #[test]
    fn thresholds_trip_only_above_their_rates() {
        let zero = Sample::default();
        let healthy = Sample {
            opened: 100,
            dropped: 10,
        };
        assert_eq!(judge(&zero, &healthy, &users(100, 5, 100, 2)), Ok(()));
        let sick = Sample {
            opened: 100,
            dropped: 11,
        };
        let err = judge(&zero, &sick, &users(100, 6, 100, 3)).unwrap_err();
        assert!(
            err.contains("delivery failures 6.0% of users > 5% (6 of 100 users)"),
            "{err}"
        );
        assert!(err.contains("connection drop rate 11.0% > 10%"), "{err}");
        assert!(
            err.contains("critical event failures 3.0% of users > 2%"),
            "{err}"
        );
    }

    #[test]
    fn small_windows_are_not_judged() {
        // Nine users, all failing: too few users to speak for the service.
        assert_eq!(
            judge(&Sample::default(), &Sample::default(), &users(9, 9, 9, 9)),
            Ok(())
        );
        // Many drops from connections of fewer than MIN_USERS users.
        let drops = Sample {
            opened: 40,
            dropped: 40,
        };
        let few = UserCounts {
            opened: 3,
            ..UserCounts::default()
        };
        assert_eq!(judge(&Sample::default(), &drops, &few), Ok(()));
    }

    #[test]
    fn one_user_is_one_vote_however_many_of_its_sends_fail() {
        let u = UserOutcomes::default();
        let now = Instant::now();
        for i in 0..1000 {
            u.record_at("mallory", Outcome::DeliveryFailed, now);
            u.record_at("mallory", Outcome::AgentFailed, now);
            if i < 19 {
                u.record_at(&format!("user{i}"), Outcome::AgentOk, now);
            }
        }
        let c = u.counts_at(now);
        assert_eq!(
            (c.sent_to, c.failed, c.agent, c.agent_failed),
            (20, 1, 20, 1)
        );
        // 1 of 20 users is 5 %: not above the delivery threshold; above 2 % for agent events.
        let err = judge(&Sample::default(), &Sample::default(), &c).unwrap_err();
        assert!(!err.contains("delivery"), "{err}");
        // Failures across many users trip it.
        for i in 0..5 {
            u.record_at(&format!("user{i}"), Outcome::DeliveryFailed, now);
        }
        let err = judge(&Sample::default(), &Sample::default(), &u.counts_at(now)).unwrap_err();
        assert!(err.contains("delivery failures 30.0% of users"), "{err}");
        // Users leave the window.
        assert_eq!(
            u.counts_at(now + WINDOW + Duration::from_secs(1)),
            UserCounts::default()
        );
    }

    #[test]
    fn the_user_table_is_bounded_and_frees_up_as_users_leave_the_window() {
        let u = UserOutcomes::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_USERS + 10 {
            u.record_at(&i.to_string(), Outcome::Opened, t0);
        }
        assert_eq!(u.counts_at(t0).opened, MAX_TRACKED_USERS as u64);
        let later = t0 + WINDOW + Duration::from_secs(2);
        u.record_at("newcomer", Outcome::Opened, later);
        assert_eq!(u.counts_at(later).opened, 1);
    }

    #[test]
    fn a_window_started_with_the_server_judges_what_came_before_the_first_check() {
        let h = Health::starting_now();
        for i in 0..20 {
            h.users.record(&format!("u{i}"), Outcome::Opened);
        }
        let incident = Sample {
            opened: 20,
            dropped: 10,
        };
        assert!(h
            .check(incident)
            .unwrap_err()
            .contains("connection drop rate"));
        // Without the starting sample the first check has nothing to compare with.
        let h = Health::default();
        for i in 0..20 {
            h.users.record(&format!("u{i}"), Outcome::Opened);
        }
        assert_eq!(h.check(incident), Ok(()));
    }

    #[test]
    fn the_window_compares_against_its_oldest_sample() {
        let h = Health::default();
        for i in 0..20 {
            h.users.record(&format!("u{i}"), Outcome::Opened);
        }
        let base = Sample {
            opened: 1000,
            dropped: 0,
        };
        assert_eq!(h.check(base), Ok(()));
        let later = Sample {
            opened: 1030,
            dropped: 10,
        };
        assert!(h.check(later).is_err());
    }

    #[test]
    fn memory_trips_above_its_percentage_of_the_baseline() {
        let mib = 1 << 20;
        assert_eq!(judge_memory(Some(200 * mib), Some(100 * mib), 200), Ok(()));
        let err = judge_memory(Some(200 * mib + 1), Some(100 * mib), 200).unwrap_err();
        assert!(
            err.starts_with("memory spike 200% of baseline > 200%"),
            "{err}"
        );
        let err = judge_memory(Some(350 * mib), Some(100 * mib), 200).unwrap_err();
        assert!(
            err.starts_with("memory spike 350% of baseline > 200%"),
            "{err}"
        );
        assert_eq!(judge_memory(Some(350 * mib), Some(100 * mib), 400), Ok(()));
        // Unknown figures, or no baseline yet, are never judged.
        assert_eq!(judge_memory(None, Some(100 * mib), 200), Ok(()));
        assert_eq!(judge_memory(Some(u64::MAX), None, 200), Ok(()));
        assert_eq!(judge_memory(Some(u64::MAX), Some(0), 200), Ok(()));
        // No overflow at the extremes.
        assert!(judge_memory(Some(u64::MAX), Some(1), u32::MAX).is_err());
        assert!(judge_memory(Some(1), Some(u64::MAX), u32::MAX).is_ok());
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().expect("VmRSS on Linux");
            assert!(rss > 100 * 1024, "{rss}");
        }
        let m = Memory::with_limit(300);
        m.set_baseline(1 << 20);
        let f = m.figures();
        assert_eq!((f.baseline_bytes, f.limit_percent), (Some(1 << 20), 300));
    }
}
