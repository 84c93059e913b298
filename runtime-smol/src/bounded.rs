//! Bounded texts for logs and HTTP answers: what a client sent reaches them
//! only as a short escaped excerpt, and refusal log lines are rate-limited so
//! a flood of bad requests cannot flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most characters of client-controlled text kept in an excerpt.
pub(crate) const EXCERPT_CHARS: usize = 32;

/// `text` escaped with `escape_debug` (no newline or control character
/// survives) and cut to [`EXCERPT_CHARS`] characters, with `…` when cut.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for c in text.chars() {
        let escaped = c.escape_debug().to_string();
        let n = escaped.chars().count();
        if chars + n > EXCERPT_CHARS {
            out.push('…');
            return out;
        }
        chars += n;
        out.push_str(&escaped);
    }
    out
}

/// Refusal log lines allowed per kind and window.
pub(crate) const REFUSAL_LOGS_PER_WINDOW: u32 = 10;
/// The window of [`REFUSAL_LOGS_PER_WINDOW`].
pub(crate) const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(1);

/// Kinds of refusal, each limited on its own (one flood does not hide the others).
pub(crate) const REFUSAL_KINDS: usize = 8;

/// The status each kind stands for (the last one: any other status).
const KIND_STATUS: [&str; REFUSAL_KINDS] =
    ["400", "401", "403", "404", "408", "429", "503", "other"];

/// The kind (index) of a refusal with HTTP `status`.
pub(crate) fn refusal_kind(status: u16) -> usize {
    match status {
        400 => 0,
        401 => 1,
        403 => 2,
        404 => 3,
        408 => 4,
        429 => 5,
        503 => 6,
        _ => 7,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// At most [`REFUSAL_LOGS_PER_WINDOW`] log lines per kind and
/// [`REFUSAL_LOG_WINDOW`]; the first line of a later window is preceded by
/// one "k refusal(s) … suppressed" line when lines were dropped.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    windows: Mutex<[Window; REFUSAL_KINDS]>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            windows: Mutex::new(
                [Window {
                    start: None,
                    logged: 0,
                    suppressed: 0,
                }; REFUSAL_KINDS],
            ),
        }
    }
}

/// What to do with one refusal's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Write the line.
    pub(crate) log: bool,
    /// Lines of this kind dropped in earlier windows, to report first (0: none).
    pub(crate) suppressed_before: u64,
}

impl RefusalLog {
    /// Decides on one refusal of `status` at `now`.
    pub(crate) fn check(&self, status: u16, now: Instant) -> Verdict {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = &mut windows[refusal_kind(status)];
        let mut suppressed_before = 0;
        let expired = w
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= REFUSAL_LOG_WINDOW);
        if expired {
            suppressed_before = std::mem::take(&mut w.suppressed);
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged < REFUSAL_LOGS_PER_WINDOW {
            w.logged += 1;
            Verdict {
                log: true,
                suppressed_before,
            }
        } else {
            w.suppressed += 1;
            Verdict {
                log: false,
                suppressed_before,
            }
        }
    }

    /// Takes the counts of lines dropped in windows that have ended by
    /// `now`, as `(kind index, count)`, so they are reported even when no
    /// later refusal of that kind comes.
    pub(crate) fn take_ended(&self, now: Instant) -> Vec<(usize, u64)> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        windows
            .iter_mut()
            .enumerate()
            .filter(|(_, w)| {
                w.suppressed > 0
                    && w.start
                        .is_some_and(|s| now.saturating_duration_since(s) >= REFUSAL_LOG_WINDOW)
            })
            .map(|(kind, w)| (kind, std::mem::take(&mut w.suppressed)))
            .collect()
    }

    /// Logs the "suppressed" line of every window that has ended (called
    /// every [`REFUSAL_LOG_WINDOW`] by the server).
    pub(crate) fn flush(&self) {
        for (kind, n) in self.take_ended(Instant::now()) {
            log::info!(
                "{n} refusal(s) with status {} suppressed (more than {REFUSAL_LOGS_PER_WINDOW} per {:?})",
                KIND_STATUS[kind],
                REFUSAL_LOG_WINDOW
            );
        }
    }

    /// Logs `line` (a refusal with HTTP `status`) at INFO unless the kind is
    /// over its budget; `line` is built only when it is written.
    pub(crate) fn info(&self, status: u16, line: impl FnOnce() -> String) {
        let v = self.check(status, Instant::now());
        if v.suppressed_before > 0 {
            log::info!(
                "{} refusal(s) with status {status} suppressed (more than {REFUSAL_LOGS_PER_WINDOW} per {:?})",
                v.suppressed_before,
                REFUSAL_LOG_WINDOW
            );
        }
        if v.log {
            log::info!("{}", line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("HS256"), "HS256");
        let forged = format!("x\nINFO forged line{}", "a".repeat(10_000));
        let e = excerpt(&forged);
        assert!(!e.contains('\n') && !e.contains('\r'), "{e}");
        assert!(e.chars().count() <= EXCERPT_CHARS + 1, "{e}");
        assert!(e.starts_with("x\\nINFO"), "{e}");
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("\u{1b}[31m"), "\\u{1b}[31m");
    }

    #[test]
    fn refusal_logs_are_limited_per_kind_and_report_what_was_dropped() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let logged = (0..100).filter(|_| log.check(401, t0).log).count();
        assert_eq!(logged, REFUSAL_LOGS_PER_WINDOW as usize);
        // Another kind has its own budget.
        assert!(log.check(403, t0).log);
        let later = t0 + REFUSAL_LOG_WINDOW;
        assert_eq!(
            log.check(401, later),
            Verdict {
                log: true,
                suppressed_before: 100 - u64::from(REFUSAL_LOGS_PER_WINDOW)
            }
        );
        assert_eq!(log.check(401, later).suppressed_before, 0);
        // Without a later refusal, the periodic flush reports the count.
        for _ in 0..REFUSAL_LOGS_PER_WINDOW + 3 {
            log.check(429, later);
        }
        assert_eq!(log.take_ended(later), vec![]);
        assert_eq!(log.take_ended(later + REFUSAL_LOG_WINDOW), vec![(5, 3)]);
        assert_eq!(log.take_ended(later + 2 * REFUSAL_LOG_WINDOW), vec![]);
    }
}
