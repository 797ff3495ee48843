//! The service manager's view of `shadowd run` (systemd `Type=notify`, see
//! `deploy/shadowtap.service`): `READY=1` once the tap is attached, `STATUS=` lines with what
//! was mirrored and skipped, `WATCHDOG=1` keep-alives only while the data path makes progress
//! (a stuck pipeline stops them and systemd restarts the service), `RELOADING=1` around a
//! SIGHUP reload and `STOPPING=1` at shutdown.
//!
//! Notifications go to `$NOTIFY_SOCKET` (through the `sd-notify` crate); without it (not under
//! systemd) they are no-ops, and without `$WATCHDOG_USEC` no keep-alives are sent.

use crate::shutdown::Shutdown;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a `STATUS=` line is sent.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Proof of progress: the data path's housekeeping beats it (twice a second, traffic or not);
/// the watchdog sends a keep-alive only if it beat since the last one.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// A heartbeat that has not beaten yet.
    pub fn new() -> Heartbeat {
        Heartbeat::default()
    }

    /// Records progress.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Beats so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sends `states` to the service manager; the first failure is logged (it cannot stop the
/// daemon: the manager then only misses the news).
fn notify(states: &[NotifyState]) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot notify the service manager ($NOTIFY_SOCKET): {e}");
        }
    }
}

/// `READY=1` with a first status line: the tap is attached.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A `STATUS=` line.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` (a SIGHUP reload began); [`reloaded`] ends it.
pub fn reloading() {
    notify(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ]);
}

/// `READY=1` again after a reload, with its result.
pub fn reloaded(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`: shutdown began.
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining replays"),
    ]);
}

/// The keep-alive period systemd asked for (`$WATCHDOG_USEC`, for this process), if any.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Sends a `STATUS=` line (from `describe`) every [`STATUS_EVERY`] and, when systemd set a
/// watchdog, `WATCHDOG=1` twice per period as long as `heartbeat` moved since the previous
/// keep-alive; runs until shutdown.
pub async fn supervise(
    heartbeat: Heartbeat,
    describe: impl Fn() -> String,
    mut shutdown: Shutdown,
) {
    let watchdog = watchdog_period();
    if let Some(period) = watchdog {
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog: keep-alives while the data path makes progress"
        );
    }
    let tick = watchdog.map_or(STATUS_EVERY, |p| (p / 2).min(STATUS_EVERY));
    let mut ticks = tokio::time::interval(tick);
    ticks.tick().await;
    let mut last_beat = heartbeat.count();
    let mut last_status = tokio::time::Instant::now();
    let mut stalled_warned = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => return,
            _ = ticks.tick() => {}
        }
        if watchdog.is_some() {
            let beat = heartbeat.count();
            if beat != last_beat {
                last_beat = beat;
                stalled_warned = false;
                notify(&[NotifyState::Watchdog]);
            } else if !stalled_warned {
                stalled_warned = true;
                tracing::warn!(
                    "the data path made no progress for {} ms: no watchdog keep-alive (systemd \
                     restarts shadowd if it stays stuck)",
                    tick.as_millis()
                );
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            status(&describe());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_counts_its_beats_across_clones() {
        let heartbeat = Heartbeat::new();
        let clone = heartbeat.clone();
        clone.beat();
        clone.beat();
        assert_eq!(heartbeat.count(), 2);
    }
}
