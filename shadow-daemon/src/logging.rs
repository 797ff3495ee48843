//! Where `shadowd`'s log lines go and how they look, and warnings that could repeat without
//! end (a full queue, a malformed record per packet, a failing accept) held to one line per cause
//! per interval, with the count of the ones held back.
//!
//! Formats (`--log-format`, `SHADOWD_LOG_FORMAT`): `plain` (tracing's human format, with colours
//! when stderr is a terminal), `json` (one JSON object per line: `timestamp`, `level`, `target`,
//! `fields` flattened), `auto` (the default: `plain`; under journald — `$JOURNAL_STREAM` set —
//! without colours and without timestamps, which journald adds itself).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `plain` on a terminal (with colours) or in a file/pipe (without); under journald
    /// without colours or timestamps.
    #[default]
    Auto,
    /// Human-readable lines; colours only on a terminal.
    Plain,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The choices `auto` resolves to, from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// JSON lines.
    pub json: bool,
    /// ANSI colours.
    pub ansi: bool,
    /// A timestamp on each line.
    pub timestamps: bool,
}

impl LogFormat {
    /// The style of this format for stderr being a terminal or not, under journald or not.
    pub fn style(self, stderr_is_terminal: bool, under_journald: bool) -> Style {
        match self {
            LogFormat::Json => Style {
                json: true,
                ansi: false,
                timestamps: true,
            },
            LogFormat::Plain => Style {
                json: false,
                ansi: stderr_is_terminal && !under_journald,
                timestamps: true,
            },
            LogFormat::Auto => Style {
                json: false,
                ansi: stderr_is_terminal && !under_journald,
                timestamps: !under_journald,
            },
        }
    }
}

/// Logs to stderr, filtered by `filter` (tracing `EnvFilter` syntax; `info` if invalid), in
/// `format`.
pub fn init(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let style = format.style(std::io::stderr().is_terminal(), under_journald);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(style.ansi);
    let _ = match (style.json, style.timestamps) {
        (true, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        (false, true) => builder.try_init(),
        (false, false) => builder.without_time().try_init(),
    };
}

/// One warning site's limiter: each cause is let through at most once per interval; a line
/// that is let through carries how many of its cause were held back since the previous one.
/// `const`, for a `static` beside the warning.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    causes: Mutex<BTreeMap<String, Held>>,
}

#[derive(Debug)]
struct Held {
    last: Instant,
    suppressed: u64,
}

/// Causes remembered per site at most (a flood of distinct causes forgets the oldest state).
const MAX_CAUSES: usize = 256;

impl RateLimited {
    /// At most one line per cause per `every`.
    pub const fn new(every: Duration) -> Self {
        RateLimited {
            every,
            causes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether to log `cause` now: `Some(n)` with the `n` lines of that cause held back since
    /// the last one logged, or `None` (held back, counted).
    pub fn allow(&self, cause: &str) -> Option<u64> {
        self.allow_at(cause, Instant::now())
    }

    fn allow_at(&self, cause: &str, now: Instant) -> Option<u64> {
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = causes.get_mut(cause) {
            if now.duration_since(held.last) < self.every {
                held.suppressed += 1;
                return None;
            }
            let suppressed = held.suppressed;
            *held = Held {
                last: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if causes.len() >= MAX_CAUSES {
            causes.clear();
        }
        causes.insert(
            cause.to_string(),
            Held {
                last: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_per_interval_with_the_count_held_back() {
        let limited = RateLimited::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(limited.allow_at("queue full", t0), Some(0));
        assert_eq!(limited.allow_at("queue full", t0), None);
        assert_eq!(
            limited.allow_at("queue full", t0 + Duration::from_secs(59)),
            None
        );
        assert_eq!(
            limited.allow_at("write: ENOSPC", t0),
            Some(0),
            "another cause"
        );
        assert_eq!(
            limited.allow_at("queue full", t0 + Duration::from_secs(61)),
            Some(2)
        );
        assert_eq!(
            limited.allow_at("queue full", t0 + Duration::from_secs(62)),
            None
        );
    }

    #[test]
    fn auto_is_plain_without_colours_or_timestamps_under_journald() {
        let auto = LogFormat::Auto;
        assert_eq!(
            auto.style(true, false),
            Style {
                json: false,
                ansi: true,
                timestamps: true
            }
        );
        assert!(!auto.style(false, false).ansi, "no colours into a file");
        assert_eq!(
            auto.style(true, true),
            Style {
                json: false,
                ansi: false,
                timestamps: false
            }
        );
        assert!(LogFormat::Json.style(true, false).json);
        assert!(!LogFormat::Json.style(true, false).ansi);
        assert!(!LogFormat::Plain.style(false, true).ansi);
    }
}
