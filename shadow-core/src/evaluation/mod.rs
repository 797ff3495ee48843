//! Running aggregates over comparisons, served as `/api/summary` and judged by the success
//! criteria: one [`Scoreboard`] for all traffic and one per segment (each request path, and
//! each value of one configured input field; both capped, the rest in `(other)`), the replay
//! queue's wait, and the ground-truth join.
//!
//! Ground truth arrives later than the comparison: a compared request with an id waits in a
//! bounded [`LabelJoin`] until its label comes ([`Evaluation::label`]) or its time runs out
//! ([`Evaluation::expire`]; it then counts as unlabeled). Labels known in advance (an offline
//! run's `--labels FILE`) are [`Evaluation::preload`]ed and joined as their request is
//! compared. Everything is pure: the caller passes the time.
//!
//! The aggregates (not the requests still waiting for a label) are serialisable, so that a
//! daemon can snapshot them and resume after a restart ([`Evaluation::state`],
//! [`Evaluation::restore`]).

pub mod keys;
pub mod latency;
pub mod quality;
pub mod scoreboard;
pub mod truth;

pub use keys::{KeyRules, RequestKeys};
pub use latency::{LatencyHistogram, LatencyStats};
pub use quality::{Outputs, QualitySummary};
pub use scoreboard::{Agreement, AgreementSummary, ScoreSummary, Scoreboard};
pub use truth::{LabelLine, Truth, parse_label_line, parse_label_lines};

use crate::compare::{Comparison, DiscrepancyKind};
use crate::criteria::{Measurements, ModelPair};
use crate::labels::{JoinCounters, JoinLimits, LabelJoin, LabelOutcome};
use crate::vocabulary::AgreementUnit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The segment values beyond the cap are counted under this name.
pub const OTHER_SEGMENT: &str = "(other)";

/// Version of the serialised [`EvaluationState`]; a state of another version is refused.
pub const STATE_VERSION: u32 = 1;

/// How the evaluation is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvaluationLimits {
    /// Distinct segments kept per dimension (paths; field values) before `(other)`.
    pub max_segments: usize,
    /// The ground-truth join's caps.
    pub join: JoinLimits,
    /// Most labels preloaded (known before their request).
    pub max_preloaded: usize,
}

impl Default for EvaluationLimits {
    fn default() -> Self {
        EvaluationLimits {
            max_segments: 32,
            join: JoinLimits::default(),
            max_preloaded: 1_000_000,
        }
    }
}

/// A compared request waiting for its label.
#[derive(Clone, Debug)]
struct Pending {
    path: String,
    field: Option<String>,
    production: Outputs,
    shadow: Outputs,
}

/// Scoreboards of one segment dimension, at most `max` named ones plus `(other)`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Segments {
    boards: BTreeMap<String, Scoreboard>,
}

impl Segments {
    /// The key `value` is counted under.
    fn key(&self, value: &str, max: usize) -> String {
        if self.boards.contains_key(value) {
            return value.to_owned();
        }
        let named = self.boards.len() - usize::from(self.boards.contains_key(OTHER_SEGMENT));
        if named < max && value != OTHER_SEGMENT {
            value.to_owned()
        } else {
            OTHER_SEGMENT.to_owned()
        }
    }

    fn board(&mut self, key: &str) -> &mut Scoreboard {
        self.boards.entry(key.to_owned()).or_default()
    }
}

/// What happened to labels, beyond the join's own counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCounters {
    /// The join's counters (waiting, joined, expired, evicted, unknown, late, duplicate ...).
    pub join: JoinCounters,
    /// Compared requests without an id: they can never be labeled.
    pub without_id: u64,
    /// Labels preloaded before their request.
    pub preloaded: u64,
    /// Preloaded labels refused because the preload cap was reached.
    pub preload_overflow: u64,
    /// Requests joined with a preloaded label.
    pub preloaded_joined: u64,
    /// Label lines refused as malformed.
    pub malformed: u64,
}

/// What happened to one label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelResult {
    /// Joined with its waiting request.
    Joined,
    /// No request with this id is waiting or was seen recently.
    Unknown,
    /// Its request stopped waiting (expired or evicted) before it came.
    Late,
    /// Its request was already labeled.
    Duplicate,
}

impl LabelResult {
    /// `joined`, `unknown`, `late` or `duplicate`.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelResult::Joined => "joined",
            LabelResult::Unknown => "unknown",
            LabelResult::Late => "late",
            LabelResult::Duplicate => "duplicate",
        }
    }
}

/// The ground-truth join's state, as `/api/summary` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LabelsSummary {
    /// Whether requests get ids (an id header or pointer is configured).
    pub enabled: bool,
    /// Compared requests waiting for their label now.
    pub waiting: usize,
    /// Bytes they take (estimated).
    pub waiting_bytes: usize,
    /// Preloaded labels not yet met by their request.
    pub preloaded_waiting: usize,
    /// Cumulative counters.
    pub counters: LabelCounters,
}

/// Scoreboards per segment dimension.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentsSummary {
    /// The JSON pointer of the segment field, if configured.
    pub field_pointer: Option<String>,
    /// One summary per request path.
    pub path: BTreeMap<String, ScoreSummary>,
    /// One summary per value of the segment field.
    pub field: BTreeMap<String, ScoreSummary>,
}

/// `/api/summary`: a snapshot of the aggregates.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// All traffic.
    #[serde(flatten)]
    pub overall: ScoreSummary,
    /// Time replays waited in the replay queue before they were sent (pacing and capacity).
    pub queue_wait: LatencyStats,
    /// The ground-truth join.
    pub labels: LabelsSummary,
    /// The same per segment.
    pub segments: SegmentsSummary,
}

/// The serialisable aggregates (what survives a restart).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvaluationState {
    /// [`STATE_VERSION`].
    pub version: u32,
    overall: Scoreboard,
    by_path: Segments,
    by_field: Segments,
    queue_wait: LatencyHistogram,
    labels: LabelCounters,
}

impl EvaluationState {
    /// What the success criteria are judged on (see [`Evaluation::measurements`]).
    pub fn measurements(&self) -> Measurements {
        measurements(&self.overall, &self.by_path, &self.by_field)
    }

    /// Each model's latency distribution over all traffic.
    pub fn latency(&self) -> ModelPair<&LatencyHistogram> {
        self.overall.latency()
    }
}

/// The running state.
#[derive(Debug)]
pub struct Evaluation {
    limits: EvaluationLimits,
    rules: KeyRules,
    overall: Scoreboard,
    by_path: Segments,
    by_field: Segments,
    queue_wait: LatencyHistogram,
    join: LabelJoin<Pending>,
    preloaded: HashMap<String, Truth>,
    labels: LabelCounters,
}

impl Default for Evaluation {
    fn default() -> Self {
        Evaluation::new(KeyRules::default(), EvaluationLimits::default())
    }
}

impl Evaluation {
    /// An empty evaluation reading request ids and segments by `rules`.
    pub fn new(rules: KeyRules, limits: EvaluationLimits) -> Self {
        Evaluation {
            limits,
            rules,
            overall: Scoreboard::default(),
            by_path: Segments::default(),
            by_field: Segments::default(),
            queue_wait: LatencyHistogram::default(),
            join: LabelJoin::new(limits.join),
            preloaded: HashMap::new(),
            labels: LabelCounters::default(),
        }
    }

    /// Where request ids and segments are read from.
    pub fn rules(&self) -> &KeyRules {
        &self.rules
    }

    /// Whether requests can be labeled at all (an id header or pointer is configured).
    pub fn labels_enabled(&self) -> bool {
        self.rules.id_header.is_some() || self.rules.id_pointer.is_some()
    }

    /// Adds one comparison of a request with these keys, at `now`.
    pub fn record(&mut self, c: &Comparison, keys: &RequestKeys, now: Duration) {
        let max = self.limits.max_segments;
        let path = self.by_path.key(&keys.path, max);
        let field = keys.field.as_deref().map(|f| self.by_field.key(f, max));
        self.overall.record(c);
        self.by_path.board(&path).record(c);
        if let Some(f) = &field {
            self.by_field.board(f).record(c);
        }
        if !self.labels_enabled() || c.production.prediction.is_none() {
            return;
        }
        let Some(id) = keys.id.as_deref() else {
            self.labels.without_id += 1;
            return;
        };
        let pending = Pending {
            path,
            field,
            production: Outputs::of(c.production.prediction.as_ref()),
            shadow: Outputs::of(c.shadow.prediction.as_ref()),
        };
        if let Some(truth) = self.preloaded.remove(id) {
            self.labels.preloaded_joined += 1;
            self.score(&pending, &truth);
            return;
        }
        let size = pending.production.size_estimate()
            + pending.shadow.size_estimate()
            + pending.path.len()
            + pending.field.as_ref().map_or(0, String::len);
        // Items that leave unlabeled are counted by the join (evicted, oversized, ...).
        let _unlabeled = self.join.insert(id, pending, size, now);
    }

    /// The label for request `id` arrived at `now`.
    pub fn label(&mut self, id: &str, truth: Truth, now: Duration) -> LabelResult {
        match self.join.label(id, truth, now) {
            LabelOutcome::Joined { item, label, .. } => {
                self.score(&item, &label);
                LabelResult::Joined
            }
            LabelOutcome::Unknown => LabelResult::Unknown,
            LabelOutcome::Late => LabelResult::Late,
            LabelOutcome::Duplicate => LabelResult::Duplicate,
        }
    }

    /// A label known before its request (an offline run's label file): kept until the request
    /// is compared. Returns false when the preload cap is reached (counted).
    pub fn preload(&mut self, id: String, truth: Truth) -> bool {
        if self.preloaded.len() >= self.limits.max_preloaded && !self.preloaded.contains_key(&id) {
            self.labels.preload_overflow += 1;
            return false;
        }
        self.labels.preloaded += 1;
        self.preloaded.insert(id, truth);
        true
    }

    /// Counts label lines refused as malformed.
    pub fn malformed_labels(&mut self, n: u64) {
        self.labels.malformed += n;
    }

    /// Requests whose wait for a label is over at `now` stop waiting (counted as expired).
    pub fn expire(&mut self, now: Duration) {
        self.join.expire(now);
    }

    /// Every request still waiting for its label stops waiting (at stop: they are not part of
    /// the saved state), counted as expired; returns how many.
    pub fn drain_pending(&mut self) -> usize {
        self.join.drain().len()
    }

    fn score(&mut self, p: &Pending, truth: &Truth) {
        self.overall.record_truth(truth, &p.production, &p.shadow);
        self.by_path
            .board(&p.path)
            .record_truth(truth, &p.production, &p.shadow);
        if let Some(f) = &p.field {
            self.by_field
                .board(f)
                .record_truth(truth, &p.production, &p.shadow);
        }
    }

    /// Time one replay waited in the queue before it was sent.
    pub fn record_queue_wait(&mut self, ns: u64) {
        self.queue_wait.record(ns);
    }

    /// The agreement ratio in `unit`, if any comparison defined it.
    pub fn agreement_ratio(&self, unit: AgreementUnit) -> Option<f64> {
        match unit {
            AgreementUnit::Request => self.overall.request_agreement().ratio(),
            AgreementUnit::Row => self.overall.row_agreement().ratio(),
        }
    }

    /// Count of one discrepancy kind so far.
    pub fn discrepancies(&self, kind: DiscrepancyKind) -> u64 {
        self.overall.discrepancies(kind.as_str())
    }

    fn label_counters(&self) -> LabelCounters {
        let mut c = self.labels;
        c.join = self.join.counters();
        c
    }

    /// What the success criteria are judged on: all traffic, and each segment under
    /// `path=<path>` and `field=<value>` (resources are added by the caller).
    pub fn measurements(&self) -> Measurements {
        measurements(&self.overall, &self.by_path, &self.by_field)
    }

    /// A snapshot for `/api/summary`.
    pub fn summary(&self) -> Summary {
        let each = |s: &Segments| {
            s.boards
                .iter()
                .map(|(k, b)| (k.clone(), b.summary()))
                .collect()
        };
        Summary {
            overall: self.overall.summary(),
            queue_wait: self.queue_wait.stats(),
            labels: LabelsSummary {
                enabled: self.labels_enabled(),
                waiting: self.join.len(),
                waiting_bytes: self.join.bytes(),
                preloaded_waiting: self.preloaded.len(),
                counters: self.label_counters(),
            },
            segments: SegmentsSummary {
                field_pointer: self.rules.segment_pointer.clone(),
                path: each(&self.by_path),
                field: each(&self.by_field),
            },
        }
    }

    /// The aggregates to save (requests still waiting for a label are not part of it).
    pub fn state(&self) -> EvaluationState {
        EvaluationState {
            version: STATE_VERSION,
            overall: self.overall.clone(),
            by_path: self.by_path.clone(),
            by_field: self.by_field.clone(),
            queue_wait: self.queue_wait.clone(),
            labels: self.label_counters(),
        }
    }

    /// Continues from saved aggregates (replacing what was counted so far).
    pub fn restore(&mut self, state: EvaluationState) -> Result<(), StateError> {
        if state.version != STATE_VERSION {
            return Err(StateError::Version(state.version));
        }
        self.overall = state.overall;
        self.by_path = state.by_path;
        self.by_field = state.by_field;
        self.queue_wait = state.queue_wait;
        self.labels = state.labels;
        self.join = LabelJoin::with_counters(self.limits.join, state.labels.join);
        Ok(())
    }
}

/// A saved state cannot be resumed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Written by another version of the format.
    #[error(
        "the state was written in format version {0}, this shadowd reads version {v}; move it \
         aside to start afresh",
        v = STATE_VERSION
    )]
    Version(u32),
}

fn measurements(overall: &Scoreboard, by_path: &Segments, by_field: &Segments) -> Measurements {
    let mut m = overall.measurements();
    for (dimension, segments) in [("path", by_path), ("field", by_field)] {
        for (key, board) in &segments.boards {
            m.segments
                .insert(format!("{dimension}={key}"), board.measurements());
        }
    }
    m
}

#[cfg(test)]
mod tests;
