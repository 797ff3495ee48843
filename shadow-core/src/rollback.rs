//! The rollback policy: after a promotion, when does a verdict call for rolling it back?
//!
//! # Reverse shadow
//!
//! Before promotion the tapped production port serves the old model (v1) and `shadow.url` the
//! new one (v2); every criterion of [`crate::criteria`] is written from the shadow's point of
//! view: "the **shadow** must be at most `accuracy_margin` less accurate than production", "the
//! **shadow**'s p99 may be at most `max_p99_latency_ratio` × production's", and so on. In plain
//! words each criterion says *the new model must not be worse than the old one by more than
//! this*.
//!
//! Promoting swaps the deployment: the production port now serves v2 and the shadow URL is
//! pointed at v1 (a *reverse shadow*; `docs/rollback.md` shows the two configurations side by
//! side). Judged as written, every criterion would now hold the **old** model to the bar:
//! `accuracy_margin` would fail when v1 is clearly worse than v2, which is exactly what a good
//! promotion looks like. Rolling back on that would be wrong.
//!
//! So a reverse-shadow run judges the criteria **with the roles swapped back**
//! ([`evaluate_reverse_shadow`], [`swap_roles`]): wherever a criterion says "shadow" it reads
//! the new model (now on the production port), wherever it says "production" the old one (now
//! the shadow). Every criterion keeps the meaning it had when it promoted v2, and the same
//! `[criteria]` serve before and after promotion. `min_agreement` is symmetric and
//! `min_samples` / `min_labeled` are counts; swapping does not change them.
//!
//! # Triggers
//!
//! The rollback triggers are the criteria that must **keep holding** after promotion. A trigger
//! fires when its criterion's status is [`Status::Fail`]: with 95 % confidence, the new model
//! breaks the bar it was promoted on. For example `accuracy_margin = 0.02` as a trigger fires
//! when the old model is clearly (interval entirely) more than 2 points more accurate than the
//! new one on the same labeled requests; `max_p99_latency_ratio = 1.5` when the new model's p99
//! is more than 1.5 × the old one's. Not-enough-data never fires (an interval that straddles
//! the threshold is no evidence), nor does a failure of a criterion that is not a trigger (it
//! makes the verdict REJECT, and is shown, but does not act). `min_samples` and `min_labeled`
//! never fail and cannot be triggers ([`TRIGGERABLE`]).
//!
//! # Cooldown
//!
//! A trigger that keeps failing fires at most once per cooldown: the first failing verdict
//! fires, every failing verdict within `cooldown` of that firing is suppressed (counted), and
//! the first failing verdict after it fires again. The statistics are cumulative, so once a
//! rollback has happened the trigger keeps failing until the run is reset: the action must be
//! idempotent, and the runbook stops the reverse-shadow run after a rollback.
//!
//! Pure: the caller passes the current time as a [`Duration`] since any fixed origin (e.g. a
//! monotonic clock's start; it must not go backwards), like [`crate::labels`].

use crate::criteria::{
    Criteria, CriterionName, CriterionResult, Decision, Measurements, ModelPair, Status, Verdict,
    evaluate,
};
use crate::stats::proportion::PairedCounts;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Every criterion, in the order of [`Criteria`]'s fields.
pub const CRITERIA: [CriterionName; 9] = [
    CriterionName::MinSamples,
    CriterionName::MinLabeled,
    CriterionName::MinAgreement,
    CriterionName::AccuracyMargin,
    CriterionName::F1Margin,
    CriterionName::MaxP99LatencyRatio,
    CriterionName::MaxErrorRateDelta,
    CriterionName::MaxCpuRatio,
    CriterionName::MaxRssRatio,
];

/// The criteria that can fail, hence trigger a rollback (all but the two sample counts).
pub const TRIGGERABLE: [CriterionName; 7] = [
    CriterionName::MinAgreement,
    CriterionName::AccuracyMargin,
    CriterionName::F1Margin,
    CriterionName::MaxP99LatencyRatio,
    CriterionName::MaxErrorRateDelta,
    CriterionName::MaxCpuRatio,
    CriterionName::MaxRssRatio,
];

/// The criterion whose config key is `name`.
pub fn criterion_named(name: &str) -> Option<CriterionName> {
    CRITERIA.into_iter().find(|c| c.as_str() == name)
}

/// Whether `name` is configured (has a threshold) in `criteria`. An exhaustive match, so a new
/// criterion cannot be forgotten here (nor in [`CRITERIA`], which the tests check against it).
pub fn is_configured(criteria: &Criteria, name: CriterionName) -> bool {
    match name {
        CriterionName::MinSamples => criteria.min_samples.is_some(),
        CriterionName::MinLabeled => criteria.min_labeled.is_some(),
        CriterionName::MinAgreement => criteria.min_agreement.is_some(),
        CriterionName::AccuracyMargin => criteria.accuracy_margin.is_some(),
        CriterionName::F1Margin => criteria.f1_margin.is_some(),
        CriterionName::MaxP99LatencyRatio => criteria.max_p99_latency_ratio.is_some(),
        CriterionName::MaxErrorRateDelta => criteria.max_error_rate_delta.is_some(),
        CriterionName::MaxCpuRatio => criteria.max_cpu_ratio.is_some(),
        CriterionName::MaxRssRatio => criteria.max_rss_ratio.is_some(),
    }
}

/// `m` with the production and shadow roles exchanged: in a reverse-shadow run the production
/// port serves the new model and the shadow is the old one, and after this swap every
/// criterion reads "shadow" as the new model again (see the module docs).
pub fn swap_roles(m: &Measurements) -> Measurements {
    fn swap<T: Copy>(p: Option<ModelPair<T>>) -> Option<ModelPair<T>> {
        p.map(|p| ModelPair {
            production: p.shadow,
            shadow: p.production,
        })
    }
    Measurements {
        samples: m.samples,
        agreement: m.agreement,
        correctness: m.correctness.map(|c| PairedCounts {
            both: c.both,
            first_only: c.second_only,
            second_only: c.first_only,
            neither: c.neither,
        }),
        macro_f1: swap(m.macro_f1),
        p99_latency_ms: swap(m.p99_latency_ms),
        errors: swap(m.errors),
        cpu_seconds_per_request: swap(m.cpu_seconds_per_request),
        rss_bytes: swap(m.rss_bytes),
        segments: m
            .segments
            .iter()
            .map(|(k, v)| (k.clone(), swap_roles(v)))
            .collect(),
    }
}

/// The verdict of a reverse-shadow run (production port = new model, shadow = old model):
/// [`evaluate`] on [`swap_roles`]`(m)`, so each criterion judges the new model against the old
/// one exactly as it did before promotion. PROMOTE means the promotion still holds; a failed
/// trigger calls for a rollback ([`RollbackPolicy::observe`]).
pub fn evaluate_reverse_shadow(criteria: &Criteria, m: &Measurements) -> Verdict {
    evaluate(criteria, &swap_roles(m))
}

/// What the operator configured (`[rollback]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackConfig {
    /// The criteria whose failure calls for a rollback.
    pub triggers: Vec<CriterionName>,
    /// At most one firing per this long.
    pub cooldown: Duration,
}

impl RollbackConfig {
    /// The triggers that `criteria` does not configure: they are never judged, so they can
    /// never fire (worth a warning at start).
    pub fn unconfigured_triggers(&self, criteria: &Criteria) -> Vec<CriterionName> {
        self.triggers
            .iter()
            .copied()
            .filter(|&t| !is_configured(criteria, t))
            .collect()
    }
}

/// A rollback is called for: the failed triggers and the verdict they are part of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The trigger criteria that failed, as judged (measured value, interval, threshold, why).
    pub failed: Vec<CriterionResult>,
    /// The verdict's decision (REJECT, since a criterion failed).
    pub decision: Decision,
    /// When it fired, since the caller's origin.
    pub at: Duration,
}

impl Firing {
    /// The failed criteria's names, comma-separated (`accuracy_margin,max_error_rate_delta`).
    pub fn failed_names(&self) -> String {
        let names: Vec<&str> = self.failed.iter().map(|r| r.criterion.as_str()).collect();
        names.join(",")
    }
}

/// What the policy did, cumulatively.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackCounters {
    /// Verdicts with a failed trigger that fired.
    pub firings: u64,
    /// Verdicts with a failed trigger held back by the cooldown.
    pub suppressed: u64,
}

/// Decides, verdict by verdict, when to roll back: a failed trigger fires at most once per
/// cooldown (see the module docs).
#[derive(Clone, Debug)]
pub struct RollbackPolicy {
    config: RollbackConfig,
    last_firing: Option<Duration>,
    counters: RollbackCounters,
}

impl RollbackPolicy {
    /// A policy that has not fired yet.
    pub fn new(config: RollbackConfig) -> Self {
        RollbackPolicy {
            config,
            last_firing: None,
            counters: RollbackCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RollbackConfig {
        &self.config
    }

    /// What the policy did so far.
    pub fn counters(&self) -> RollbackCounters {
        self.counters
    }

    /// The trigger criteria that failed in `verdict`, in the verdict's order (no state change).
    pub fn failed_triggers(&self, verdict: &Verdict) -> Vec<CriterionResult> {
        verdict
            .criteria
            .iter()
            .filter(|r| r.status == Status::Fail && self.config.triggers.contains(&r.criterion))
            .cloned()
            .collect()
    }

    /// How long the cooldown still holds firings back at `now` (`None`: a failing trigger
    /// would fire).
    pub fn cooldown_remaining(&self, now: Duration) -> Option<Duration> {
        let since = now.saturating_sub(self.last_firing?);
        (since < self.config.cooldown).then(|| self.config.cooldown - since)
    }

    /// Judges `verdict` at `now`: a [`Firing`] when a trigger failed and the cooldown allows
    /// it; `None` when no trigger failed, or when the cooldown holds it back (counted in
    /// [`RollbackCounters::suppressed`]).
    pub fn observe(&mut self, verdict: &Verdict, now: Duration) -> Option<Firing> {
        let failed = self.failed_triggers(verdict);
        if failed.is_empty() {
            return None;
        }
        if self.cooldown_remaining(now).is_some() {
            self.counters.suppressed += 1;
            return None;
        }
        self.last_firing = Some(now);
        self.counters.firings += 1;
        Some(Firing {
            failed,
            decision: verdict.decision,
            at: now,
        })
    }
}

/// What a firing runs (label `action` of `shadowtap_rollback_firings_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackAction {
    /// The configured command, run without a shell.
    Command,
    /// A POST of the firing to the configured webhook.
    Webhook,
    /// Nothing: `dry_run = true` only logs what would run.
    DryRun,
}

impl RollbackAction {
    /// Every action, for zero-initialised metrics.
    pub const ALL: [RollbackAction; 3] = [Self::Command, Self::Webhook, Self::DryRun];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Webhook => "webhook",
            Self::DryRun => "dry_run",
        }
    }
}

/// How an action ended (label `result` of `shadowtap_rollback_firings_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackResult {
    /// The command exited 0 / the webhook answered 2xx / the dry run was logged.
    Ok,
    /// The command could not start or exited otherwise / the webhook failed or answered
    /// another status.
    Failed,
    /// The action did not finish within `action_timeout` (a command is killed).
    Timeout,
}

impl RollbackResult {
    /// Every result, for zero-initialised metrics.
    pub const ALL: [RollbackResult; 3] = [Self::Ok, Self::Failed, Self::Timeout];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::proportion::Proportion;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn result(criterion: CriterionName, status: Status) -> CriterionResult {
        CriterionResult {
            criterion,
            status,
            measured: Some(-0.05),
            interval: None,
            threshold: -0.02,
            reason: "test".into(),
            segment: None,
        }
    }

    fn verdict(results: &[(CriterionName, Status)]) -> Verdict {
        let criteria: Vec<CriterionResult> = results.iter().map(|&(c, s)| result(c, s)).collect();
        let decision = if criteria.iter().any(|r| r.status == Status::Fail) {
            Decision::Reject
        } else if criteria.iter().all(|r| r.status == Status::Pass) {
            Decision::Promote
        } else {
            Decision::Hold
        };
        Verdict { decision, criteria }
    }

    fn policy(cooldown: Duration) -> RollbackPolicy {
        RollbackPolicy::new(RollbackConfig {
            triggers: vec![
                CriterionName::AccuracyMargin,
                CriterionName::MaxErrorRateDelta,
            ],
            cooldown,
        })
    }

    use CriterionName::{AccuracyMargin, MaxErrorRateDelta, MaxP99LatencyRatio, MinAgreement};
    use Status::{Fail, NotEnoughData, Pass};

    #[test]
    fn a_failed_trigger_fires_once_per_cooldown_and_the_rest_is_counted() {
        let mut p = policy(S(600));
        let failing = verdict(&[(MinAgreement, Pass), (AccuracyMargin, Fail)]);
        // The fake clock: seconds since the run started, one verdict a second.
        let first = p.observe(&failing, S(100)).expect("first failure fires");
        assert_eq!(first.at, S(100));
        assert_eq!(first.decision, Decision::Reject);
        assert_eq!(first.failed, vec![result(AccuracyMargin, Fail)]);
        assert_eq!(first.failed_names(), "accuracy_margin");
        // Within the cooldown (100 + 600 = 700 exclusive): held back, counted.
        for t in [101, 102, 400, 699] {
            assert_eq!(p.observe(&failing, S(t)), None, "at {t}s");
        }
        assert_eq!(p.cooldown_remaining(S(699)), Some(S(1)));
        assert_eq!(
            p.counters(),
            RollbackCounters {
                firings: 1,
                suppressed: 4
            }
        );
        // The cooldown is over: fires again, and the next cooldown starts there.
        assert_eq!(p.cooldown_remaining(S(700)), None);
        let again = p
            .observe(&failing, S(700))
            .expect("fires after the cooldown");
        assert_eq!(again.at, S(700));
        assert_eq!(p.observe(&failing, S(1299)), None);
        assert!(p.observe(&failing, S(1300)).is_some());
        assert_eq!(
            p.counters(),
            RollbackCounters {
                firings: 3,
                suppressed: 5
            }
        );
    }

    #[test]
    fn pass_and_not_enough_data_never_fire_nor_count() {
        let mut p = policy(S(60));
        for (t, v) in [
            verdict(&[(AccuracyMargin, Pass), (MaxErrorRateDelta, Pass)]),
            verdict(&[(AccuracyMargin, NotEnoughData), (MaxErrorRateDelta, Pass)]),
            verdict(&[
                (AccuracyMargin, NotEnoughData),
                (MaxErrorRateDelta, NotEnoughData),
            ]),
            verdict(&[]),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(p.observe(v, S(t as u64)), None, "{v:?}");
        }
        assert_eq!(p.counters(), RollbackCounters::default());
        // Quiet verdicts do not start a cooldown: the first failure fires at once.
        let failing = verdict(&[(MaxErrorRateDelta, Fail)]);
        assert!(p.observe(&failing, S(10)).is_some());
    }

    #[test]
    fn failures_of_criteria_that_are_not_triggers_are_ignored() {
        let mut p = policy(S(60));
        let other = verdict(&[
            (MinAgreement, Fail),
            (MaxP99LatencyRatio, Fail),
            (AccuracyMargin, Pass),
        ]);
        assert_eq!(other.decision, Decision::Reject);
        assert_eq!(p.observe(&other, S(1)), None);
        assert_eq!(p.counters(), RollbackCounters::default());
        // With a trigger failing too, only the triggers are reported.
        let both = verdict(&[
            (MinAgreement, Fail),
            (AccuracyMargin, Fail),
            (MaxErrorRateDelta, Fail),
        ]);
        let f = p.observe(&both, S(2)).unwrap();
        assert_eq!(f.failed_names(), "accuracy_margin,max_error_rate_delta");
    }

    #[test]
    fn a_clock_going_backwards_does_not_reopen_the_cooldown() {
        let mut p = policy(S(60));
        let failing = verdict(&[(AccuracyMargin, Fail)]);
        assert!(p.observe(&failing, S(100)).is_some());
        assert_eq!(p.observe(&failing, S(50)), None);
        assert_eq!(p.counters().suppressed, 1);
    }

    #[test]
    fn names_lists_and_configured_criteria_agree() {
        for c in CRITERIA {
            assert_eq!(criterion_named(c.as_str()), Some(c));
            // serde and as_str agree, so config names and JSON names are one vocabulary.
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(criterion_named("accuracy"), None);
        // TRIGGERABLE is CRITERIA without the two counts, in order.
        let counts = [CriterionName::MinSamples, CriterionName::MinLabeled];
        let rest: Vec<_> = CRITERIA
            .into_iter()
            .filter(|c| !counts.contains(c))
            .collect();
        assert_eq!(rest, TRIGGERABLE);
        // A full Criteria configures exactly CRITERIA, each once: a criterion missing from the
        // list would show here as a field that none of the names covers.
        let full = Criteria {
            min_samples: Some(1),
            min_labeled: Some(1),
            min_agreement: Some(0.9),
            accuracy_margin: Some(0.02),
            f1_margin: Some(0.02),
            max_p99_latency_ratio: Some(1.5),
            max_error_rate_delta: Some(0.01),
            max_cpu_ratio: Some(2.0),
            max_rss_ratio: Some(2.0),
            // The segment floors judge these same criteria per segment.
            ..Criteria::default()
        };
        let judged: Vec<CriterionName> = evaluate(&full, &Measurements::default())
            .criteria
            .iter()
            .map(|r| r.criterion)
            .collect();
        assert_eq!(judged, CRITERIA);
        assert!(CRITERIA.iter().all(|&c| is_configured(&full, c)));
        let only_accuracy = Criteria {
            accuracy_margin: Some(0.02),
            ..Criteria::default()
        };
        let config = RollbackConfig {
            triggers: vec![AccuracyMargin, MaxErrorRateDelta],
            cooldown: S(1),
        };
        assert_eq!(
            config.unconfigured_triggers(&only_accuracy),
            vec![MaxErrorRateDelta]
        );
    }

    /// After promotion: production = v2 (new), shadow = v1 (old). Labeled: v1 right on 860,
    /// v2 on 830 of the same 1000 (v2 is 3 points worse); errors v2 2 %, v1 1 %; p99 v2 90 ms,
    /// v1 50 ms.
    fn after_a_bad_promotion() -> Measurements {
        Measurements {
            samples: 1000,
            agreement: Some(Proportion::new(900, 1000)),
            // first = production (v2), second = shadow (v1).
            correctness: Some(PairedCounts {
                both: 800,
                first_only: 30,
                second_only: 60,
                neither: 110,
            }),
            macro_f1: None,
            p99_latency_ms: Some(ModelPair {
                production: 90.0,
                shadow: 50.0,
            }),
            errors: Some(ModelPair {
                production: Proportion::new(20, 1000),
                shadow: Proportion::new(10, 1000),
            }),
            cpu_seconds_per_request: None,
            rss_bytes: None,
            segments: Default::default(),
        }
    }

    #[test]
    fn reverse_shadow_judges_the_new_model_against_the_old_one() {
        let criteria = Criteria {
            min_agreement: Some(0.8),
            accuracy_margin: Some(0.0),
            max_p99_latency_ratio: Some(1.5),
            ..Criteria::default()
        };
        let m = after_a_bad_promotion();
        // As written (no swap), the criteria would judge the OLD model: v1 − v2 accuracy =
        // +0.03 passes the margin, v1/v2 p99 = 0.56 passes: nothing would ever fail.
        let naive = evaluate(&criteria, &m);
        assert_eq!(naive.decision, Decision::Promote, "{naive:?}");
        // Swapped back: v2 − v1 = −0.03, interval (−0.0488, −0.0115) entirely below −0 →
        // fail; v2/v1 p99 = 1.8 > 1.5 → fail; agreement is symmetric and still passes.
        let v = evaluate_reverse_shadow(&criteria, &m);
        let status: Vec<(CriterionName, Status)> =
            v.criteria.iter().map(|r| (r.criterion, r.status)).collect();
        assert_eq!(
            status,
            vec![
                (MinAgreement, Pass),
                (AccuracyMargin, Fail),
                (MaxP99LatencyRatio, Fail)
            ]
        );
        let accuracy = &v.criteria[1];
        assert!(
            (accuracy.measured.unwrap() + 0.03).abs() < 1e-12,
            "{accuracy:?}"
        );
        assert!((v.criteria[2].measured.unwrap() - 1.8).abs() < 1e-12);
        let mut p = policy(S(600));
        let f = p.observe(&v, S(0)).expect("accuracy_margin is a trigger");
        assert_eq!(f.failed_names(), "accuracy_margin");
        // Swapping twice is the identity.
        assert_eq!(swap_roles(&swap_roles(&m)), m);
    }

    #[test]
    fn labels_are_snake_case() {
        let labels: Vec<&str> = RollbackAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(labels, ["command", "webhook", "dry_run"]);
        let labels: Vec<&str> = RollbackResult::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(labels, ["ok", "failed", "timeout"]);
        assert_eq!(
            serde_json::to_string(&RollbackAction::DryRun).unwrap(),
            "\"dry_run\""
        );
    }
}
