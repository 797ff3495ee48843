//! The decision loop of `shadowd run`: once a second it lets requests whose wait for a label
//! is over go unlabeled, gathers the measurements (the evaluation's, plus the resource usage of
//! both model servers), judges them against the success criteria, publishes the verdict (admin
//! API and metrics), hands it to the rollback plan, ticks the time series (its current bucket,
//! and the ground truth joined since the last tick), and saves the aggregates and the time
//! series to the state file every `state.interval` and at stop.
//!
//! The state file is JSON ([`StateFile`]), written to a temporary file beside it and renamed
//! over it, so a crash never leaves half a file; `shadowd run` resumes from it and
//! `shadowd verdict --state` judges it without a running daemon.

use crate::config::Config;
use crate::mirror::MirrorStatus;
use crate::resources::ResourceSnapshot;
use crate::shutdown::Shutdown;
use crate::sinks::admin::LatestVerdict;
use crate::sinks::timeseries::{TimeSeriesHandle, TimeSeriesSnapshot};
use crate::sinks::verdict_metrics::VerdictMetrics;
use serde::{Deserialize, Serialize};
use shadow_core::criteria::{Criteria, Measurements, ModelPair, Verdict, evaluate};
use shadow_core::evaluation::EvaluationState;
use shadow_core::rollback::evaluate_reverse_shadow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often the verdict is judged.
pub const DECISION_EVERY: Duration = Duration::from_secs(1);

/// Resource usage of both models as the criteria read it: CPU seconds per handled request and
/// resident bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceMeasures {
    /// CPU seconds per request (production: per exchange seen; shadow: per replay).
    pub cpu_seconds_per_request: Option<ModelPair<f64>>,
    /// Resident memory.
    pub rss_bytes: Option<ModelPair<f64>>,
}

impl ResourceMeasures {
    /// The criteria's view of a resource sample: CPU seconds per handled request (production:
    /// `production_requests` exchanges seen; the shadow: `shadow_requests` replays) and
    /// resident bytes, for each model whose server was found (both, or nothing).
    pub fn of(s: &ResourceSnapshot, production_requests: u64, shadow_requests: u64) -> Self {
        let (Some(p), Some(sh)) = (&s.production, &s.shadow) else {
            return ResourceMeasures::default();
        };
        let per = |cpu: f64, n: u64| (n > 0).then(|| cpu / n as f64);
        ResourceMeasures {
            cpu_seconds_per_request: per(p.cpu_seconds, production_requests)
                .zip(per(sh.cpu_seconds, shadow_requests))
                .map(|(production, shadow)| ModelPair { production, shadow }),
            rss_bytes: Some(ModelPair {
                production: p.rss_bytes as f64,
                shadow: sh.rss_bytes as f64,
            }),
        }
    }
}

/// Where the loop reads resource usage from (the resource monitor).
pub type ResourceSource = Box<dyn Fn() -> ResourceMeasures + Send + Sync>;

/// Called with every verdict (the rollback plan); must not block.
pub type VerdictObserver = Box<dyn Fn(&Verdict) + Send + Sync>;

/// What the state file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateFile {
    /// When it was written, seconds since the Unix epoch.
    pub saved_at_unix: u64,
    /// The aggregates.
    pub evaluation: EvaluationState,
    /// The resource usage last measured.
    #[serde(default)]
    pub resources: ResourceMeasures,
    /// The per-interval time series (`/api/timeseries`); absent in older state files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeseries: Option<TimeSeriesSnapshot>,
}

impl StateFile {
    /// What the criteria are judged on.
    pub fn measurements(&self) -> Measurements {
        with_resources(self.evaluation.measurements(), self.resources)
    }
}

/// A state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading failed.
    #[error("cannot read the state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a state file of this version.
    #[error(
        "{path} is not a shadowd state file of this version ({source}); move it aside to start \
         afresh"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a state file; `Ok(None)` when there is none yet.
pub fn load_state(path: &Path) -> Result<Option<StateFile>, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| StateFileError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a state file atomically (a temporary file in the same directory, renamed over it),
/// readable by shadowd's user only (mode 0600: request paths and segment values are in it).
pub fn save_state(path: &Path, state: &StateFile) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // A temporary file left by an older run keeps its mode on open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(&json)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

fn with_resources(mut m: Measurements, r: ResourceMeasures) -> Measurements {
    m.cpu_seconds_per_request = r.cpu_seconds_per_request;
    m.rss_bytes = r.rss_bytes;
    m
}

/// The loop and everything it reads and writes.
pub struct DecisionLoop {
    /// The success criteria.
    pub criteria: Criteria,
    /// The evaluation.
    pub mirror: MirrorStatus,
    /// Where the verdict is published for the admin API.
    pub latest: Arc<LatestVerdict>,
    /// Where it is published as metrics.
    pub metrics: Arc<VerdictMetrics>,
    /// Resource usage, if monitored.
    pub resources: Option<ResourceSource>,
    /// The rollback plan, if configured.
    pub observer: Option<VerdictObserver>,
    /// A reverse-shadow run (after a promotion: production serves the new model, the shadow
    /// is the old one): the criteria are judged with the roles swapped back
    /// ([`evaluate_reverse_shadow`]), so PROMOTE means the promotion still holds.
    pub reverse_shadow: bool,
    /// The state file and how often to write it.
    pub state: Option<(PathBuf, Duration)>,
    /// The time series to tick and save, if kept.
    pub timeseries: Option<TimeSeriesHandle>,
    /// Reloaded configurations (SIGHUP): their `[criteria]` replace `criteria` at the next
    /// round; the aggregates stay.
    pub reloads: Option<watch::Receiver<Arc<Config>>>,
}

impl DecisionLoop {
    /// One round: expire, measure, judge, publish. Returns the verdict.
    pub fn decide(&self) -> Verdict {
        self.mirror.expire_labels();
        let summary = self.mirror.evaluation();
        self.metrics.evaluation(&summary);
        if let Some(ts) = &self.timeseries {
            ts.tick(summary.overall.ground_truth.paired);
        }
        let measurements = with_resources(self.mirror.measurements(), self.resources());
        let verdict = if self.reverse_shadow {
            evaluate_reverse_shadow(&self.criteria, &measurements)
        } else {
            evaluate(&self.criteria, &measurements)
        };
        self.metrics.verdict(&verdict);
        if let Some(observe) = &self.observer {
            observe(&verdict);
        }
        self.latest.set(verdict.clone(), measurements);
        verdict
    }

    fn resources(&self) -> ResourceMeasures {
        self.resources.as_ref().map(|r| r()).unwrap_or_default()
    }

    /// Saves the state file (if configured), logging a failure.
    pub fn save(&self) {
        let Some((path, _)) = &self.state else {
            return;
        };
        let state = StateFile {
            saved_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            evaluation: self.mirror.state(),
            resources: self.resources(),
            timeseries: self.timeseries.as_ref().map(TimeSeriesHandle::snapshot),
        };
        if let Err(e) = save_state(path, &state) {
            tracing::warn!(
                path = %path.display(),
                "cannot save the state (aggregates would not survive a restart): {e}"
            );
        }
    }

    /// Runs until shutdown, then decides and saves once more.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(DECISION_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_save = Instant::now();
        let mut last_decision = None;
        loop {
            tokio::select! {
                _ = shutdown.requested() => break,
                _ = tick.tick() => {}
            }
            if let Some(reloads) = &mut self.reloads
                && reloads.has_changed().unwrap_or(false)
            {
                self.criteria = reloads.borrow_and_update().criteria.clone();
            }
            let verdict = self.decide();
            if last_decision != Some(verdict.decision) {
                tracing::info!(decision = verdict.decision.as_str(), "verdict");
                last_decision = Some(verdict.decision);
            }
            if let Some((_, every)) = &self.state
                && last_save.elapsed() >= *every
            {
                self.save();
                last_save = Instant::now();
            }
        }
        // Requests still waiting for a label are not saved: they count as unlabeled now.
        let dropped = self.mirror.drain_labels();
        if dropped > 0 {
            tracing::info!(
                requests = dropped,
                "stopping: requests still waiting for their label are counted as unlabeled"
            );
        }
        self.decide();
        self.save();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_state_file_is_private_and_reads_back() {
        let telemetry = Arc::new(crate::telemetry::Recorder::new());
        let config = Arc::new(crate::config::test_config(""));
        let status = crate::mirror::Mirror::new(config, telemetry).status();
        let state = StateFile {
            saved_at_unix: 7,
            evaluation: status.state(),
            resources: ResourceMeasures::default(),
            timeseries: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(dir.path().join("state.json.tmp"), "old").unwrap();
        std::fs::set_permissions(
            dir.path().join("state.json.tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        save_state(&path, &state).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = load_state(&path).unwrap().expect("saved");
        assert_eq!(back.saved_at_unix, 7);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn the_time_series_is_saved_and_an_older_file_without_it_still_loads() {
        let telemetry = Arc::new(crate::telemetry::Recorder::new());
        let config = Arc::new(crate::config::test_config(""));
        let status = crate::mirror::Mirror::new(config, telemetry).status();
        let ts = TimeSeriesHandle::default();
        ts.seen();
        let state = StateFile {
            saved_at_unix: 7,
            evaluation: status.state(),
            resources: ResourceMeasures::default(),
            timeseries: Some(ts.snapshot()),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_state(&path, &state).unwrap();
        let back = load_state(&path).unwrap().expect("saved");
        let saved = back.timeseries.expect("the time series is saved");
        assert_eq!(saved, ts.snapshot());
        assert_eq!(saved.buckets.iter().map(|b| b.seen).sum::<u64>(), 1);

        // A file written before the time series existed: no key at all.
        let mut older: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        older.as_object_mut().unwrap().remove("timeseries");
        std::fs::write(&path, older.to_string()).unwrap();
        let back = load_state(&path).unwrap().expect("loads");
        assert!(back.timeseries.is_none());
        assert_eq!(back.saved_at_unix, 7);
        // Saved without one, the key is left out.
        let none = StateFile {
            timeseries: None,
            ..back
        };
        assert!(!serde_json::to_string(&none).unwrap().contains("timeseries"));
    }
}
