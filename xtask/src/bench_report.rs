//! The bench's results as JSON (`target/bench/results.json`: every job's raw values per
//! repetition, every scenario point with its figures and per-repetition ratios and their
//! min / median / max), as Markdown (`target/bench/results.md`, printed, and the README's
//! "Performance" section), and the target table filled in from them.

use crate::bench_parse::Measurement;
use crate::bench_plan::{Job, Load, Loads, Plan, Rate, Scenario, ShadowState, Variant};
use crate::bench_run::Measured;
use crate::bench_stats::{figure_json, ratios_per_rep, spread};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

/// Where and when the bench ran.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    pub cores: usize,
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the bench started.
    pub load_average: String,
}

/// Everything one invocation measured.
pub struct Results {
    pub plan: Plan,
    pub machine: Machine,
    /// Per job, one entry per repetition (the error text of a failed run).
    pub runs: BTreeMap<Job, Vec<Result<Measured, String>>>,
    /// The calibrated pace of each paced load.
    pub paces: BTreeMap<Load, crate::bench_wrk::Pace>,
    /// The parse scenario's measurements, if it ran (or why it failed).
    pub parse: Option<Result<Vec<Measurement>, String>>,
    pub elapsed: Duration,
}

/// One figure of a run.
type Figure = fn(&Measured) -> Option<f64>;

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn throughput(m: &Measured) -> Option<f64> {
    m.wrk.map(|w| w.rate())
}
fn p50_us(m: &Measured) -> Option<f64> {
    m.wrk.map(|w| us(w.p50))
}
fn p99_us(m: &Measured) -> Option<f64> {
    m.wrk.map(|w| us(w.p99))
}
fn p99_9_us(m: &Measured) -> Option<f64> {
    m.wrk.map(|w| us(w.p99_9))
}
/// wrk's completed requests.
fn served(m: &Measured) -> Option<f64> {
    m.wrk.map(|w| w.requests as f64)
}
/// What production answered during the run by its own count (it includes the requests in
/// flight when wrk stopped, which the mirror sees too), else wrk's count.
fn answered(m: &Measured) -> Option<f64> {
    m.production_answered
        .map(|n| n as f64)
        .or_else(|| served(m))
}
fn errors(m: &Measured) -> Option<f64> {
    m.wrk.map(|w| (w.non_2xx + w.socket_errors) as f64)
}
fn mirrored_ok(m: &Measured) -> Option<f64> {
    Some(m.daemon.as_ref()?.mirrored_ok())
}
fn mirrored_over_served(m: &Measured) -> Option<f64> {
    Some(m.daemon.as_ref()?.mirrored_ok() / answered(m)?.max(1.0))
}
fn shadow_received_over_served(m: &Measured) -> Option<f64> {
    Some(m.shadow_received? as f64 / answered(m)?.max(1.0))
}
fn dropped_total(m: &Measured) -> Option<f64> {
    Some(m.daemon.as_ref()?.dropped_total())
}
fn cpu_us_per_mirrored(m: &Measured) -> Option<f64> {
    let d = m.daemon.as_ref()?;
    (d.mirrored_ok() > 0.0).then(|| us(d.cpu) / d.mirrored_ok())
}
fn daemon_cores(m: &Measured) -> Option<f64> {
    let d = m.daemon.as_ref()?;
    Some(d.cpu.as_secs_f64() / d.window.as_secs_f64().max(1e-9))
}
fn rss_mib(m: &Measured) -> Option<f64> {
    Some(mib(m.daemon.as_ref()?.memory.rss_bytes))
}
fn peak_rss_mib(m: &Measured) -> Option<f64> {
    Some(mib(m.daemon.as_ref()?.memory.peak_rss_bytes))
}
fn tap_ns_per_run(m: &Measured) -> Option<f64> {
    let k = m.daemon.as_ref()?.kernel?;
    (k.run_cnt > 0).then(|| k.run_time_ns as f64 / k.run_cnt as f64)
}
fn tap_runs_per_request(m: &Measured) -> Option<f64> {
    let k = m.daemon.as_ref()?.kernel?;
    Some(k.run_cnt as f64 / answered(m)?.max(1.0))
}
fn tcpdump_received(m: &Measured) -> Option<f64> {
    Some(m.tcpdump?.received as f64)
}
fn tcpdump_dropped(m: &Measured) -> Option<f64> {
    Some(m.tcpdump?.dropped_by_kernel as f64)
}
fn idle_rss_before_mib(m: &Measured) -> Option<f64> {
    Some(mib(m.idle?.before.rss_bytes))
}
fn idle_rss_mib(m: &Measured) -> Option<f64> {
    Some(mib(m.idle?.with.rss_bytes))
}
fn idle_peak_rss_mib(m: &Measured) -> Option<f64> {
    Some(mib(m.idle?.with.peak_rss_bytes))
}
fn idle_flows_active(m: &Measured) -> Option<f64> {
    m.idle?.flows_active
}
fn idle_open_seconds(m: &Measured) -> Option<f64> {
    Some(m.idle?.open_time.as_secs_f64())
}
fn production_cpu_us_per_request(m: &Measured) -> Option<f64> {
    Some(us(m.production_cpu?) / served(m)?.max(1.0))
}
fn machine_busy_cores(m: &Measured) -> Option<f64> {
    m.machine_busy_cores
}

/// The figures reported for a job (name, accessor); those a job lacks are left out.
const FIGURES: &[(&str, Figure)] = &[
    ("throughput_rps", throughput),
    ("served", served),
    ("production_answered", answered),
    ("p50_us", p50_us),
    ("p99_us", p99_us),
    ("p99_9_us", p99_9_us),
    ("errors", errors),
    ("mirrored_ok", mirrored_ok),
    ("mirrored_over_served", mirrored_over_served),
    ("shadow_received_over_served", shadow_received_over_served),
    ("capture_dropped", dropped_total),
    ("cpu_us_per_mirrored", cpu_us_per_mirrored),
    ("daemon_cpu_cores", daemon_cores),
    ("rss_mib", rss_mib),
    ("peak_rss_mib", peak_rss_mib),
    ("tap_ns_per_run", tap_ns_per_run),
    ("tap_runs_per_request", tap_runs_per_request),
    ("tcpdump_received", tcpdump_received),
    ("tcpdump_dropped_by_kernel", tcpdump_dropped),
    ("idle_rss_before_mib", idle_rss_before_mib),
    ("idle_rss_mib", idle_rss_mib),
    ("idle_peak_rss_mib", idle_peak_rss_mib),
    ("idle_flows_active", idle_flows_active),
    ("idle_open_seconds", idle_open_seconds),
    (
        "production_cpu_us_per_request",
        production_cpu_us_per_request,
    ),
    ("machine_busy_cores", machine_busy_cores),
];

/// Latency and throughput figures compared with the baseline.
const RATIOS: &[(&str, Figure)] = &[
    ("throughput", throughput),
    ("p50", p50_us),
    ("p99", p99_us),
    ("p99_9", p99_9_us),
];

impl Results {
    /// `figure` of `job` per repetition (`None` for a failed run or a missing figure).
    fn per_rep(&self, job: Job, figure: Figure) -> Vec<Option<f64>> {
        match self.runs.get(&job) {
            Some(reps) => reps
                .iter()
                .map(|r| r.as_ref().ok().and_then(figure))
                .collect(),
            None => Vec::new(),
        }
    }

    /// `figure` of `variant` over the baseline of the same load, per repetition.
    fn ratio(&self, load: Load, variant: Variant, figure: Figure) -> Vec<Option<f64>> {
        let base = self.per_rep(
            Job::Load {
                load,
                variant: Variant::Baseline,
            },
            figure,
        );
        ratios_per_rep(&self.per_rep(Job::Load { load, variant }, figure), &base)
    }

    fn has(&self, job: Job) -> bool {
        self.runs.contains_key(&job)
    }

    /// Per label value (a stage, a reason), the count per repetition.
    fn by_label(
        &self,
        job: Job,
        pick: fn(&crate::bench_run::Daemon) -> &BTreeMap<String, f64>,
    ) -> BTreeMap<String, Vec<Option<f64>>> {
        let Some(reps) = self.runs.get(&job) else {
            return BTreeMap::new();
        };
        let keys: BTreeSet<String> = reps
            .iter()
            .filter_map(|r| r.as_ref().ok()?.daemon.as_ref())
            .flat_map(|d| pick(d).keys().cloned())
            .collect();
        keys.into_iter()
            .map(|k| {
                let per_rep = reps
                    .iter()
                    .map(|r| {
                        let d = r.as_ref().ok()?.daemon.as_ref()?;
                        Some(pick(d).get(&k).copied().unwrap_or(0.0))
                    })
                    .collect();
                (k, per_rep)
            })
            .collect()
    }

    /// The JSON of one job: every figure it has, its ratios to the baseline of its load, and
    /// its drops and skips by label.
    fn job_json(&self, job: Job) -> Value {
        let mut obj = Map::new();
        obj.insert("job".into(), job.key().into());
        obj.insert("label".into(), job.label().into());
        for (name, figure) in FIGURES {
            let per_rep = self.per_rep(job, *figure);
            if per_rep.iter().any(Option::is_some) {
                obj.insert((*name).into(), figure_json(&per_rep));
            }
        }
        if let Job::Load { load, variant } = job {
            if variant != Variant::Baseline
                && self.has(Job::Load {
                    load,
                    variant: Variant::Baseline,
                })
            {
                let ratios: Map<String, Value> = RATIOS
                    .iter()
                    .map(|(name, f)| ((*name).into(), figure_json(&self.ratio(load, variant, *f))))
                    .collect();
                obj.insert("ratios_vs_baseline".into(), Value::Object(ratios));
            }
        }
        let labelled = |pick| -> Value {
            self.by_label(job, pick)
                .into_iter()
                .map(|(k, v)| (k, figure_json(&v)))
                .collect::<Map<_, _>>()
                .into()
        };
        if self.per_rep(job, mirrored_ok).iter().any(Option::is_some) {
            obj.insert("mirrored_by_result".into(), labelled(|d| &d.mirrored));
            obj.insert("dropped_by_stage".into(), labelled(|d| &d.dropped));
            obj.insert("skipped_by_reason".into(), labelled(|d| &d.skipped));
        }
        let failures: Vec<Value> = self
            .runs
            .get(&job)
            .map(|reps| {
                reps.iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        r.as_ref().err().map(|e| json!({"rep": i + 1, "error": e}))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !failures.is_empty() {
            obj.insert("failures".into(), failures.into());
        }
        Value::Object(obj)
    }

    /// The jobs of `scenario` that this invocation ran, in run order.
    fn jobs_of(&self, scenario: Scenario) -> Vec<Job> {
        let planned: BTreeSet<Job> =
            crate::bench_plan::jobs_of(scenario, &Loads::new(self.plan.quick))
                .into_iter()
                .collect();
        planned.into_iter().filter(|j| self.has(*j)).collect()
    }

    /// The whole results file.
    pub fn to_json(&self) -> Value {
        let mut scenarios = Map::new();
        for &s in &self.plan.scenarios {
            let value = if s == Scenario::Parse {
                match &self.parse {
                    Some(Ok(ms)) => Value::Array(ms.iter().map(measurement_json).collect()),
                    Some(Err(e)) => json!({"error": e}),
                    None => Value::Null,
                }
            } else {
                Value::Array(
                    self.jobs_of(s)
                        .into_iter()
                        .map(|j| self.job_json(j))
                        .collect(),
                )
            };
            scenarios.insert(s.key().into(), value);
        }
        let failed: usize = self.failures().len();
        json!({
            "schema": 1,
            "mode": if self.plan.quick { "quick" } else { "full" },
            "machine": {
                "date": self.machine.date,
                "cores": self.machine.cores,
                "cpu_model": self.machine.cpu_model,
                "kernel": self.machine.kernel,
                "load_average_at_start": self.machine.load_average,
            },
            "config": {
                "repetitions": self.plan.reps,
                "seconds_per_run": self.plan.seconds,
                "max_rate_connections": crate::bench_plan::MAX_RATE_CONNECTIONS,
                "paces": self.paces.iter()
                    .map(|(load, p)| (load.key(), json!({
                        "connections": p.connections,
                        "pause_ms": p.period_ms,
                    })))
                    .collect::<Map<_, _>>(),
                "pacing": "each paced connection sends one request, waits for the answer, then pauses (10 ms; longer below 1k req/s, to keep 10 connections); connections are calibrated so that production alone serves the rate",
                "small_body_bytes": crate::bench_run::SMALL_BODY.len(),
                "large_body_bytes": crate::bench_run::LARGE_BODY_BYTES,
                "large_body": "the small OIP request plus a 1 MiB string in `parameters` (the demo model answers 200)",
                "ratios": "per repetition, variant / baseline of the same load in the same repetition; min/median/max over repetitions",
            },
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "failed_runs": failed,
            "scenarios": Value::Object(scenarios),
            "runs": self.runs.iter().map(|(job, reps)| json!({
                "job": job.key(),
                "reps": reps.iter().map(|r| match r {
                    Ok(m) => raw_json(m),
                    Err(e) => json!({"error": e}),
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "targets": self.targets().iter().map(|t| json!({
                "measure": t.measure,
                "target": t.target,
                "measured": t.measured,
                "met": t.met,
            })).collect::<Vec<_>>(),
        })
    }

    /// Failed runs: (job label, repetition, error).
    pub fn failures(&self) -> Vec<(String, usize, String)> {
        let mut out = Vec::new();
        for (job, reps) in &self.runs {
            for (i, r) in reps.iter().enumerate() {
                if let Err(e) = r {
                    out.push((job.label(), i + 1, e.clone()));
                }
            }
        }
        if let Some(Err(e)) = &self.parse {
            out.push(("parse".into(), 1, e.clone()));
        }
        out
    }
}

fn measurement_json(m: &Measurement) -> Value {
    let (unit, n) = match m.throughput {
        crate::bench_parse::Throughput::Bytes(n) => ("bytes", n),
        crate::bench_parse::Throughput::Elements(n) => ("elements", n),
    };
    json!({
        "group": m.group,
        "function": m.function,
        "median_ns_per_iteration": m.median_ns,
        "per_iteration": n,
        "unit": unit,
        "per_second": m.per_second(),
    })
}

/// One run's raw values.
fn raw_json(m: &Measured) -> Value {
    let mut obj = Map::new();
    if let Some(w) = m.wrk {
        obj.insert(
            "wrk".into(),
            json!({
                "requests": w.requests,
                "duration_us": us(w.duration),
                "rate": w.rate(),
                "p50_us": us(w.p50),
                "p90_us": us(w.p90),
                "p99_us": us(w.p99),
                "p99_9_us": us(w.p99_9),
                "max_us": us(w.max),
                "non_2xx": w.non_2xx,
                "socket_errors": w.socket_errors,
            }),
        );
    }
    if let Some(d) = &m.daemon {
        obj.insert(
            "shadowd".into(),
            json!({
                "mirrored_by_result": d.mirrored,
                "dropped_by_stage": d.dropped,
                "skipped_by_reason": d.skipped,
                "cpu_us": us(d.cpu),
                "window_us": us(d.window),
                "rss_bytes": d.memory.rss_bytes,
                "peak_rss_bytes": d.memory.peak_rss_bytes,
                "settled": d.settled,
                "tap_run_time_ns": d.kernel.map(|k| k.run_time_ns),
                "tap_run_cnt": d.kernel.map(|k| k.run_cnt),
            }),
        );
    }
    if let Some(t) = m.tcpdump {
        obj.insert(
            "tcpdump".into(),
            json!({
                "captured": t.captured,
                "received_by_filter": t.received,
                "dropped_by_kernel": t.dropped_by_kernel,
            }),
        );
    }
    if let Some(i) = m.idle {
        obj.insert(
            "idle_flows".into(),
            json!({
                "connections": i.connections,
                "rss_before_bytes": i.before.rss_bytes,
                "rss_bytes": i.with.rss_bytes,
                "peak_rss_bytes": i.with.peak_rss_bytes,
                "flows_active": i.flows_active,
                "exchanges_accounted": i.exchanges,
                "open_seconds": i.open_time.as_secs_f64(),
            }),
        );
    }
    if let Some(n) = m.shadow_received {
        obj.insert("shadow_received".into(), n.into());
    }
    if let Some(n) = m.production_answered {
        obj.insert("production_answered".into(), n.into());
    }
    if let Some(cpu) = m.production_cpu {
        obj.insert("production_cpu_us".into(), us(cpu).into());
    }
    if let Some(cores) = m.machine_busy_cores {
        obj.insert("machine_busy_cores".into(), cores.into());
    }
    Value::Object(obj)
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// `median (min–max)`, or the median alone when every repetition agrees or there is one;
/// `—` when no repetition produced the figure.
fn cell(per_rep: &[Option<f64>], fmt: fn(f64) -> String) -> String {
    match spread(per_rep) {
        None => "—".into(),
        Some(s) if s.n == 1 || fmt(s.min) == fmt(s.max) => fmt(s.median),
        Some(s) => format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)),
    }
}

fn f2(x: f64) -> String {
    format!("{x:.2}")
}
fn f3(x: f64) -> String {
    format!("{x:.3}")
}
fn f0(x: f64) -> String {
    format!("{x:.0}")
}
fn f1(x: f64) -> String {
    format!("{x:.1}")
}
/// Microseconds as milliseconds, without the unit (see [`ms_cell`]).
fn ms(x_us: f64) -> String {
    if x_us >= 10_000.0 {
        format!("{:.0}", x_us / 1e3)
    } else {
        format!("{:.2}", x_us / 1e3)
    }
}

/// A [`cell`] of latencies in microseconds, shown in milliseconds: `1.10 (0.92–1.19) ms`.
fn ms_cell(per_rep: &[Option<f64>]) -> String {
    match cell(per_rep, ms) {
        none if none == "—" => none,
        c => format!("{c} ms"),
    }
}
fn count(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Results {
    /// The Markdown report: header, targets, then one table per scenario that ran.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Measured by `cargo xtask bench{}` on {}: {} cores ({}), kernel {}, load average at \
             start {}. {} repetition{} of {} s per point, variants interleaved (A B C A B C …); \
             ratios are taken per repetition against the baseline of the same repetition and \
             shown as median (min–max). Everything runs on this machine over loopback: wrk \
             (one thread), the demo models (production v1, shadow v2), shadowd / nginx / \
             tcpdump. Fixed rates are paced: each connection sends a request, waits for the \
             answer, then pauses 10 ms (longer below 1k req/s), with as many connections as \
             make production alone serve the rate; max rate is 16 connections without pause. \
             Took {:.0} s.",
            if self.plan.quick { " --quick" } else { "" },
            m.date,
            m.cores,
            m.cpu_model,
            m.kernel,
            m.load_average,
            self.plan.reps,
            if self.plan.reps == 1 { "" } else { "s" },
            self.plan.seconds,
            self.elapsed.as_secs_f64(),
        );
        md.push('\n');
        md += &self.targets_markdown();
        for &s in &self.plan.scenarios {
            md.push('\n');
            md += &match s {
                Scenario::Overhead => self.overhead_markdown(),
                Scenario::Isolation => self.isolation_markdown(),
                Scenario::Fidelity => self.fidelity_markdown(),
                Scenario::Cost => self.cost_markdown(),
                Scenario::Parse => self.parse_markdown(),
            };
        }
        let failures = self.failures();
        if !failures.is_empty() {
            let _ = writeln!(md, "\n### Failed runs\n");
            for (label, rep, err) in failures {
                let first = err.lines().next().unwrap_or("");
                let _ = writeln!(md, "- {label}, repetition {rep}: {first}");
            }
        }
        md
    }

    fn overhead_markdown(&self) -> String {
        let mut md = String::from(
            "### Overhead: what each variant costs production\n\n\
             Production's throughput and latency with shadowtap tapping it or nginx `mirror` \
             in front, over production alone (baseline rows: absolute values). Mirrored: \
             requests the shadow got back an answer for (shadowtap's count; for nginx, the \
             shadow's), over the requests production answered (its own count).\n\n\
             | load | variant | req/s | throughput × | p50 × | p99 × | p99.9 × | mirrored | errors |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for job in self.jobs_of(Scenario::Overhead) {
            let Job::Load { load, variant } = job else {
                continue;
            };
            let errors = cell(&self.per_rep(job, errors), f0);
            let rps = cell(&self.per_rep(job, throughput), f0);
            let row = if variant == Variant::Baseline {
                format!(
                    "| {} | baseline | {rps} | 1 | {} | {} | {} | — | {errors} |",
                    load.label(),
                    ms_cell(&self.per_rep(job, p50_us)),
                    ms_cell(&self.per_rep(job, p99_us)),
                    ms_cell(&self.per_rep(job, p99_9_us)),
                )
            } else {
                let mirrored = match variant {
                    Variant::Shadowtap { .. } => self.per_rep(job, mirrored_over_served),
                    _ => self.per_rep(job, shadow_received_over_served),
                };
                format!(
                    "| {} | {} | {rps} | {} | {} | {} | {} | {} | {errors} |",
                    load.label(),
                    variant.name(),
                    cell(&self.ratio(load, variant, throughput), f2),
                    cell(&self.ratio(load, variant, p50_us), f2),
                    cell(&self.ratio(load, variant, p99_us), f2),
                    cell(&self.ratio(load, variant, p99_9_us), f2),
                    cell(&mirrored, f3),
                )
            };
            md += &row;
            md.push('\n');
        }
        md
    }

    fn isolation_markdown(&self) -> String {
        let mut md = String::from(
            "### Isolation: production while the shadow is slow or down\n\n\
             | load | shadow | variant | req/s | throughput × | p99 × | errors |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        for job in self.jobs_of(Scenario::Isolation) {
            let Job::Load { load, variant } = job else {
                continue;
            };
            let shadow = match variant {
                Variant::Shadowtap { shadow, .. } | Variant::NginxMirror { shadow } => {
                    shadow.label()
                }
                _ => "—",
            };
            let (tp, p99) = if variant == Variant::Baseline {
                ("1".to_string(), ms_cell(&self.per_rep(job, p99_us)))
            } else {
                (
                    cell(&self.ratio(load, variant, throughput), f2),
                    cell(&self.ratio(load, variant, p99_us), f2),
                )
            };
            let _ = writeln!(
                md,
                "| {} | {shadow} | {} | {} | {tp} | {p99} | {} |",
                load.label(),
                variant.name(),
                cell(&self.per_rep(job, throughput), f0),
                cell(&self.per_rep(job, errors), f0),
            );
        }
        md
    }

    fn fidelity_markdown(&self) -> String {
        let mut md = String::from(
            "### Fidelity: mirrored / served, drops and skips\n\n\
             Served: inference requests production answered during the run, by its own count \
             (wrk's completed count leaves out those in flight when it stopped, which the \
             mirror sees too). shadowtap: `shadowtap_mirrored_requests_total{result=\"ok\"}` \
             after it settles, over served; drops by stage and skips by reason (non-zero ones). \
             nginx mirror: requests the shadow answered, over served. tcpdump: packets dropped \
             by the kernel of those received by its filter.\n\n\
             | load | variant | served | mirrored / served | capture drops | skipped | kernel drops |\n\
             |---|---|---:|---:|---|---|---:|\n",
        );
        for job in self.jobs_of(Scenario::Fidelity) {
            let Job::Load { load, variant } = job else {
                continue;
            };
            let labelled = |pick: fn(&crate::bench_run::Daemon) -> &BTreeMap<String, f64>| {
                let parts: Vec<String> = self
                    .by_label(job, pick)
                    .into_iter()
                    .filter(|(_, v)| spread(v).is_some_and(|s| s.max > 0.0))
                    .map(|(k, v)| format!("{k} {}", cell(&v, count)))
                    .collect();
                if parts.is_empty() {
                    "0".to_string()
                } else {
                    parts.join(", ")
                }
            };
            let (ratio, drops, skipped, kernel) = match variant {
                Variant::Shadowtap { .. } => (
                    cell(&self.per_rep(job, mirrored_over_served), f3),
                    labelled(|d| &d.dropped),
                    labelled(|d| &d.skipped),
                    "—".to_string(),
                ),
                Variant::NginxMirror { .. } => (
                    cell(&self.per_rep(job, shadow_received_over_served), f3),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                ),
                Variant::Tcpdump => (
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    format!(
                        "{} of {}",
                        cell(&self.per_rep(job, tcpdump_dropped), count),
                        cell(&self.per_rep(job, tcpdump_received), count)
                    ),
                ),
                Variant::Baseline => ("—".into(), "—".into(), "—".into(), "—".into()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {ratio} | {drops} | {skipped} | {kernel} |",
                load.label(),
                variant.name(),
                cell(&self.per_rep(job, answered), count),
            );
        }
        md
    }

    fn cost_markdown(&self) -> String {
        let mut md = String::from(
            "### Cost: the daemon's CPU and memory, the tap's kernel time\n\n\
             CPU is user + system of `shadowd` (/proc/PID/stat) over the load window and the \
             settling after it, per request mirrored with a response; memory is VmRSS / VmHWM \
             after the run.\n\n\
             | load | CPU µs / mirrored request | daemon CPU (cores) | RSS MiB | peak RSS MiB |\n\
             |---|---:|---:|---:|---:|\n",
        );
        let jobs = self.jobs_of(Scenario::Cost);
        for &job in &jobs {
            let Job::Load {
                load,
                variant:
                    Variant::Shadowtap {
                        kernel_stats: false,
                        ..
                    },
            } = job
            else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                load.label(),
                cell(&self.per_rep(job, cpu_us_per_mirrored), f1),
                cell(&self.per_rep(job, daemon_cores), f2),
                cell(&self.per_rep(job, rss_mib), f1),
                cell(&self.per_rep(job, peak_rss_mib), f1),
            );
        }
        for &job in &jobs {
            match job {
                Job::Load {
                    load,
                    variant:
                        Variant::Shadowtap {
                            kernel_stats: true, ..
                        },
                } => {
                    let _ = writeln!(
                        md,
                        "\nThe tap in the kernel (`kernel.bpf_stats_enabled=1`, `run_time_ns` / \
                         `run_cnt` of our `shadow_tap` program) at {}: **{} ns per run**, {} runs \
                         per request (on `lo` the tap sits on ingress only: one run per packet).",
                        load.label(),
                        cell(&self.per_rep(job, tap_ns_per_run), f0),
                        cell(&self.per_rep(job, tap_runs_per_request), f1),
                    );
                }
                Job::IdleFlows { connections } => {
                    let _ = writeln!(
                        md,
                        "\nWith {} idle keep-alive connections open to production through the tap \
                         (one request each, then silent): shadowd RSS **{} MiB** (peak {} MiB; {} \
                         MiB before they opened), flows active {}.",
                        count(connections as f64),
                        cell(&self.per_rep(job, idle_rss_mib), f1),
                        cell(&self.per_rep(job, idle_peak_rss_mib), f1),
                        cell(&self.per_rep(job, idle_rss_before_mib), f1),
                        cell(&self.per_rep(job, idle_flows_active), count),
                    );
                }
                _ => {}
            }
        }
        md
    }

    fn parse_markdown(&self) -> String {
        let mut md =
            String::from("### Parse: offline pcap → exchanges, one core (criterion, median)\n\n");
        let ms = match &self.parse {
            Some(Ok(ms)) => ms,
            Some(Err(e)) => {
                let _ = writeln!(md, "Failed: {}", e.lines().next().unwrap_or(""));
                return md;
            }
            None => return md,
        };
        md += "| workload | pcap → exchanges MB/s | exchanges/s | pcap read alone MB/s | payload copy alone MB/s |\n\
               |---|---:|---:|---:|---:|\n";
        let mut workloads: Vec<&str> = ms
            .iter()
            .filter_map(|m| m.group.split_once('/').map(|(w, _)| w))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // As the bench declares them: small before large, segments before GSO, HTTP/1.1 first.
        workloads.sort_by_key(|w| (w.contains("large"), w.contains("gso"), w.starts_with("h2_")));
        let find = |w: &str, kind: &str, function: &str| -> Option<f64> {
            ms.iter()
                .find(|m| m.group == format!("{w}/{kind}") && m.function == function)
                .map(Measurement::per_second)
        };
        let mb = |x: Option<f64>| x.map_or("—".into(), |v| format!("{:.0}", v / 1e6));
        for w in workloads {
            let _ = writeln!(
                md,
                "| {w} | {} | {} | {} | {} |",
                mb(find(w, "bytes", "pcap_to_exchanges")),
                find(w, "exchanges", "pcap_to_exchanges").map_or("—".into(), count),
                mb(find(w, "bytes", "baseline_pcap_file_read")),
                mb(find(w, "bytes", "baseline_payload_concat")),
            );
        }
        md
    }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// One row of the target table.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub measure: &'static str,
    pub target: &'static str,
    pub measured: String,
    /// `None` when this run did not measure it.
    pub met: Option<bool>,
}

impl Results {
    fn median(&self, per_rep: &[Option<f64>]) -> Option<f64> {
        spread(per_rep).map(|s| s.median)
    }

    /// The nine targets, judged on medians over repetitions.
    pub fn targets(&self) -> Vec<Target> {
        use Rate::{Fixed, Max};
        let small10k = Load::small(Fixed(10_000));
        let small5k = Load::small(Fixed(5_000));
        let small_max = Load::small(Max);
        let tap = |load| Job::Load {
            load,
            variant: Variant::SHADOWTAP,
        };
        let tap_in = |shadow| Variant::Shadowtap {
            shadow,
            kernel_stats: false,
        };
        let mut rows = Vec::new();
        let mut row = |measure, target, measured: Option<String>, met: Option<bool>| {
            rows.push(Target {
                measure,
                target,
                measured: measured.unwrap_or_else(|| "not measured".into()),
                met,
            });
        };

        // 1. CPU per mirrored request at 10k req/s.
        let v = self.per_rep(tap(small10k), cpu_us_per_mirrored);
        row(
            "daemon CPU per mirrored request, small JSON (10k req/s)",
            "≤ 10 µs",
            self.median(&v).map(|_| format!("{} µs", cell(&v, f1))),
            self.median(&v).map(|m| m <= 10.0),
        );
        // 2. Mirrored / served at 10k req/s.
        let v = self.per_rep(tap(small10k), mirrored_over_served);
        row(
            "mirrored / served at 10k req/s offered",
            "1.000",
            self.median(&v).map(|_| cell(&v, f3)),
            self.median(&v).map(|m| m >= 0.9995),
        );
        // 3. Throughput at max rate with a slow shadow.
        let v = self.ratio(small_max, tap_in(ShadowState::Slow), throughput);
        let nginx = self.ratio(
            small_max,
            Variant::NginxMirror {
                shadow: ShadowState::Slow,
            },
            throughput,
        );
        row(
            "production throughput at max rate, shadow slow (1 s) / baseline",
            "≥ 0.95",
            self.median(&v)
                .map(|_| format!("{}; nginx mirror: {}", cell(&v, f2), cell(&nginx, f3))),
            self.median(&v).map(|m| m >= 0.95),
        );
        // 4. At max rate: mirrored / served and throughput / baseline.
        let mirrored = self.per_rep(tap(small_max), mirrored_over_served);
        let tput = self.ratio(small_max, Variant::SHADOWTAP, throughput);
        let nginx_mirrored = self.per_rep(
            Job::Load {
                load: small_max,
                variant: Variant::NGINX,
            },
            shadow_received_over_served,
        );
        let nginx_tput = self.ratio(small_max, Variant::NGINX, throughput);
        let both = self.median(&mirrored).zip(self.median(&tput));
        row(
            "at max rate, mirroring: mirrored / served, and throughput / baseline",
            "≥ 0.95 and ≥ 0.60",
            both.map(|_| {
                format!(
                    "{} and {}; nginx mirror: {} and {}",
                    cell(&mirrored, f3),
                    cell(&tput, f2),
                    cell(&nginx_mirrored, f3),
                    cell(&nginx_tput, f2)
                )
            }),
            both.map(|(m, t)| m >= 0.95 && t >= 0.60),
        );
        // 5. p99 at 10k req/s.
        let v = self.ratio(small10k, Variant::SHADOWTAP, p99_us);
        row(
            "production p99 tapped / baseline at 10k req/s",
            "≤ 1.05",
            self.median(&v).map(|_| format!("×{}", cell(&v, f2))),
            self.median(&v).map(|m| m <= 1.05),
        );
        // 6. p99 with the shadow slow or down, at the fixed isolation rate (at max rate p99
        // follows throughput).
        let slow = self.ratio(small5k, tap_in(ShadowState::Slow), p99_us);
        let down = self.ratio(small5k, tap_in(ShadowState::Down), p99_us);
        let worst = self
            .median(&slow)
            .zip(self.median(&down))
            .map(|(a, b)| a.max(b));
        row(
            "production p99, shadow slow or down / baseline (5k req/s)",
            "≤ 1.05",
            worst.map(|_| format!("slow ×{}, down ×{}", cell(&slow, f2), cell(&down, f2))),
            worst.map(|w| w <= 1.05),
        );
        // 7. Capture drops at max rate vs tcpdump.
        let ours = self.per_rep(tap(small_max), dropped_total);
        let theirs = self.per_rep(
            Job::Load {
                load: small_max,
                variant: Variant::Tcpdump,
            },
            tcpdump_dropped,
        );
        let pair = self.median(&ours).zip(self.median(&theirs));
        row(
            "capture drops at max rate",
            "fewer than tcpdump",
            pair.map(|_| {
                format!(
                    "{}; tcpdump: {} packets",
                    cell(&ours, count),
                    cell(&theirs, count)
                )
            }),
            pair.map(|(o, t)| o < t || o == 0.0),
        );
        // 8. RSS with idle flows.
        let idle_job = self
            .runs
            .keys()
            .copied()
            .find(|j| matches!(j, Job::IdleFlows { .. }));
        let (v, n) = match idle_job {
            Some(j @ Job::IdleFlows { connections }) => {
                (self.per_rep(j, idle_rss_mib), connections)
            }
            _ => (Vec::new(), 0),
        };
        row(
            "RSS with 10k idle flows",
            "≤ 64 MiB",
            self.median(&v).map(|_| {
                let of = if n == 10_000 {
                    String::new()
                } else {
                    format!(" (with {} flows)", count(n as f64))
                };
                format!("{} MiB{of}", cell(&v, f1))
            }),
            self.median(&v).filter(|_| n >= 10_000).map(|m| m <= 64.0),
        );
        // 9. Kernel time per packet.
        let kernel_job = self.runs.keys().copied().find(|j| {
            matches!(
                j,
                Job::Load {
                    variant: Variant::Shadowtap {
                        kernel_stats: true,
                        ..
                    },
                    ..
                }
            )
        });
        let v = kernel_job.map_or_else(Vec::new, |j| self.per_rep(j, tap_ns_per_run));
        row(
            "tap cost in the kernel",
            "≤ 300 ns per packet",
            self.median(&v)
                .map(|_| format!("{} ns per packet", cell(&v, f0))),
            self.median(&v).map(|m| m <= 300.0),
        );
        rows
    }

    fn targets_markdown(&self) -> String {
        let mut md = String::from(
            "### Targets (issue 13), judged on the median over repetitions\n\n\
             | measure | target | measured | met? |\n|---|---|---|---|\n",
        );
        for t in self.targets() {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {met} |",
                t.measure, t.target, t.measured
            );
        }
        md
    }
}

// ---------------------------------------------------------------------------------------------
// README

/// Marks the start of the generated part of the README's "Performance" section.
pub const README_START: &str =
    "<!-- bench:start (written by `cargo xtask bench`; edits here are overwritten) -->";
/// Marks its end.
pub const README_END: &str = "<!-- bench:end -->";

/// `readme` with the text between the markers replaced by `section`; `None` if the markers
/// are missing or out of order.
pub fn replace_readme_section(readme: &str, section: &str) -> Option<String> {
    let start = readme.find(README_START)? + README_START.len();
    let end = start + readme[start..].find(README_END)?;
    Some(format!(
        "{}\n\n{}\n{}",
        &readme[..start],
        section.trim_end(),
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests;
