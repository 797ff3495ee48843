//! Runs one job of the bench plan and measures it: wrk against production (directly, or
//! through nginx), with a fresh `shadowd` tapping it, tcpdump capturing it, or idle
//! connections held open through the tap. Every process a job starts is stopped when the job
//! returns, on every path.

use crate::bench_bpf::{StatsEnabled, tap_of};
use crate::bench_idle::{IdleConnections, post_request};
use crate::bench_nginx::Nginx;
use crate::bench_plan::{Body, Job, Load, MAX_RATE_CONNECTIONS, Rate, ShadowState, Variant};
use crate::bench_proc::{Memory, cpu_time, memory};
use crate::bench_tcpdump::{Tcpdump, TcpdumpCounts};
use crate::bench_wrk::{Offer, Pace, Scripts, WrkResult};
use crate::services::{Processes, free_port, http_get, spawn_logged, wait_ready};
use anyhow::{Context, bail};
use shadowtap_test_support::prom::Metrics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The model route and a valid Open Inference Protocol body (one wine, 11 FP64 features).
pub const INFER_PATH: &str = "/v2/models/wine-quality/infer";
pub const SMALL_BODY: &str = r#"{"inputs":[{"name":"input-0","shape":[1,11],"datatype":"FP64","data":[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]}]}"#;

/// Size of the large body.
pub const LARGE_BODY_BYTES: usize = 1 << 20;

/// The 1 MiB body: [`SMALL_BODY`] with a free-form `parameters` object holding one long
/// string, which the demo model ignores (it answers 200 with one prediction). A 4096-row batch
/// of the same size is also answered, but then the model's own JSON work caps production at
/// ~130 req/s and the tap's share of the cost disappears in it.
pub fn large_body() -> String {
    let head = format!(
        "{},\"parameters\":{{\"padding\":\"",
        SMALL_BODY.strip_suffix('}').unwrap_or(SMALL_BODY)
    );
    let tail = "\"}}";
    let pad = LARGE_BODY_BYTES.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// What one run of a job measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub wrk: Option<WrkResult>,
    pub daemon: Option<Daemon>,
    pub tcpdump: Option<TcpdumpCounts>,
    pub idle: Option<Idle>,
    /// Inference requests the shadow model answered during the run (nginx and shadowtap with
    /// a healthy shadow): the shadow's own count, independent of the mirror's.
    pub shadow_received: Option<u64>,
    /// Inference requests production answered during the run, by its own count: unlike wrk's
    /// completed count it includes the requests still in flight when wrk stopped (which the
    /// mirror sees too).
    pub production_answered: Option<u64>,
    /// CPU the production model server used during the job.
    pub production_cpu: Option<Duration>,
    /// Cores the whole machine kept busy during the job (all processes, ours and others').
    pub machine_busy_cores: Option<f64>,
}

/// What `shadowd` reported and cost during a run.
#[derive(Clone, Debug, Default)]
pub struct Daemon {
    /// `shadowtap_mirrored_requests_total` by `result`.
    pub mirrored: BTreeMap<String, f64>,
    /// `shadowtap_capture_dropped_total` by `stage`.
    pub dropped: BTreeMap<String, f64>,
    /// `shadowtap_mirror_skipped_total` by `reason`.
    pub skipped: BTreeMap<String, f64>,
    /// User + system CPU over the load window and the settling after it.
    pub cpu: Duration,
    /// That window.
    pub window: Duration,
    pub memory: Memory,
    /// Whether every served request was accounted for (mirrored or skipped) before the
    /// settle timeout.
    pub settled: bool,
    /// The tap's kernel statistics over the load window (runs with BPF stats on).
    pub kernel: Option<KernelTime>,
}

impl Daemon {
    pub fn mirrored_ok(&self) -> f64 {
        self.mirrored.get("ok").copied().unwrap_or(0.0)
    }

    pub fn dropped_total(&self) -> f64 {
        self.dropped.values().sum()
    }

    fn from_metrics(m: &Metrics) -> Daemon {
        let by = |name: &str, label: &str| -> BTreeMap<String, f64> {
            let mut out = BTreeMap::new();
            for (labels, value) in m.series(name) {
                let key = labels.get(label).cloned().unwrap_or_default();
                *out.entry(key).or_insert(0.0) += value;
            }
            out
        };
        Daemon {
            mirrored: by("shadowtap_mirrored_requests_total", "result"),
            dropped: by("shadowtap_capture_dropped_total", "stage"),
            skipped: by("shadowtap_mirror_skipped_total", "reason"),
            ..Daemon::default()
        }
    }
}

/// The tap program's run time and run count over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTime {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The daemon's memory with idle flows open.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    pub connections: usize,
    /// Before the connections were opened.
    pub before: Memory,
    /// With all of them open and idle.
    pub with: Memory,
    /// `shadowtap_flows_active` then.
    pub flows_active: Option<f64>,
    /// Exchanges the daemon accounted for (mirrored or skipped).
    pub exchanges: f64,
    /// How long opening them took.
    pub open_time: Duration,
}

/// The fixed parts every job runs against.
pub struct Bench<'a> {
    /// Directory of the release `shadowd` and `demo-model`.
    pub bin: &'a Path,
    /// Where logs go.
    pub dir: &'a Path,
    pub production: SocketAddr,
    /// Production's server process.
    pub production_pid: u32,
    pub shadow_healthy: SocketAddr,
    pub shadow_slow: SocketAddr,
    pub shadow_down: SocketAddr,
    pub small: Scripts,
    pub large: Scripts,
    pub seconds: u64,
    /// The pace of each paced load, from [`Bench::calibrate`] (else [`Pace::new`]).
    pub paces: BTreeMap<Load, Pace>,
}

impl Bench<'_> {
    /// Runs `job`; `tag` names its log files.
    pub fn run(&self, job: Job, tag: &str) -> anyhow::Result<Measured> {
        let Job::Load { .. } = job else {
            return self.run_job(job, tag);
        };
        // Probed with nothing else running (no tap, no nginx): the probes are not in the run.
        let before = answers_so_far(self.production)?;
        let mut measured = self.run_job(job, tag)?;
        let after = answers_so_far(self.production)?;
        measured.production_answered = Some(after.saturating_sub(before + 1));
        Ok(measured)
    }

    fn run_job(&self, job: Job, tag: &str) -> anyhow::Result<Measured> {
        match job {
            Job::Load { load, variant } => match variant {
                Variant::Baseline => Ok(Measured {
                    wrk: Some(self.wrk(load, self.production)?),
                    ..Measured::default()
                }),
                Variant::Shadowtap {
                    shadow,
                    kernel_stats,
                } => self.shadowtap(load, shadow, kernel_stats, tag),
                Variant::NginxMirror { shadow } => self.nginx(load, shadow),
                Variant::Tcpdump => self.tcpdump(load),
            },
            Job::IdleFlows { connections } => self.idle_flows(connections, tag),
        }
    }

    /// wrk's offer for `load`.
    pub fn offer(&self, load: Load) -> Offer {
        match load.rate {
            Rate::Fixed(r) => {
                let mut pace = Pace::new(f64::from(r), self.seconds);
                if let Some(calibrated) = self.paces.get(&load) {
                    pace.connections = calibrated.connections;
                }
                Offer::Paced(pace)
            }
            Rate::Max => Offer::Max {
                connections: MAX_RATE_CONNECTIONS,
                seconds: self.seconds,
            },
        }
    }

    /// Sets the connections of the paced `load` so that production alone serves its rate: a
    /// paced connection's cycle is the pause plus the answer time plus wrk's timer slack, so
    /// [`Pace::new`]'s connections serve less than the rate. Two 1 s runs on production alone
    /// measure what they serve; the better one counts (noise only ever slows a run down).
    /// Returns the first pace and what it served.
    pub fn calibrate(&mut self, load: Load) -> anyhow::Result<(Pace, f64)> {
        let Rate::Fixed(rate) = load.rate else {
            bail!("only a paced load is calibrated");
        };
        let first = Pace::new(f64::from(rate), 1);
        let scripts = match load.body {
            Body::Small => &self.small,
            Body::Large => &self.large,
        };
        let url = format!("http://{}{INFER_PATH}", self.production);
        let mut served: f64 = 0.0;
        for _ in 0..2 {
            served = served.max(crate::bench_wrk::run(scripts, &url, Offer::Paced(first))?.rate());
        }
        let connections = calibrated_connections(f64::from(rate), first.connections, served);
        self.paces.insert(
            load,
            Pace {
                connections,
                seconds: self.seconds,
                ..first
            },
        );
        Ok((first, served))
    }

    /// wrk offers `load` to `target` (production or nginx).
    pub fn wrk(&self, load: Load, target: SocketAddr) -> anyhow::Result<WrkResult> {
        let scripts = match load.body {
            Body::Small => &self.small,
            Body::Large => &self.large,
        };
        crate::bench_wrk::run(
            scripts,
            &format!("http://{target}{INFER_PATH}"),
            self.offer(load),
        )
    }

    fn shadow_addr(&self, shadow: ShadowState) -> SocketAddr {
        match shadow {
            ShadowState::Healthy => self.shadow_healthy,
            ShadowState::Slow => self.shadow_slow,
            ShadowState::Down => self.shadow_down,
        }
    }

    fn shadowtap(
        &self,
        load: Load,
        shadow: ShadowState,
        kernel_stats: bool,
        tag: &str,
    ) -> anyhow::Result<Measured> {
        // Declared before the daemon: restored after it stopped.
        let _stats = kernel_stats.then(StatsEnabled::on).transpose()?;
        let daemon = Shadowd::start(self, shadow, tag)?;
        let shadow_before = self.shadow_count(shadow)?;
        let kernel_before = kernel_stats.then(|| tap_of(daemon.pid)).transpose()?;
        let cpu_before = cpu_time(daemon.pid)?;
        let started = Instant::now();
        let wrk = self.wrk(load, self.production)?;
        let kernel_after = kernel_stats.then(|| tap_of(daemon.pid)).transpose()?;
        let (metrics, settled) = if shadow == ShadowState::Healthy {
            settle(daemon.admin, wrk.requests as f64)?
        } else {
            // Replays to a slow or dead shadow end in timeouts and an open breaker; only
            // production is measured here.
            (daemon.metrics()?, false)
        };
        let window = started.elapsed();
        let cpu = cpu_time(daemon.pid)?.saturating_sub(cpu_before);
        let memory = memory(daemon.pid)?;
        let shadow_received = match (shadow_before, self.shadow_count(shadow)?) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before + 1)),
            _ => None,
        };
        let kernel = kernel_before.zip(kernel_after).map(|(b, a)| KernelTime {
            run_time_ns: a.run_time_ns.saturating_sub(b.run_time_ns),
            run_cnt: a.run_cnt.saturating_sub(b.run_cnt),
        });
        let mut figures = Daemon::from_metrics(&metrics);
        figures.cpu = cpu;
        figures.window = window;
        figures.memory = memory;
        figures.settled = settled;
        figures.kernel = kernel;
        drop(daemon);
        Ok(Measured {
            wrk: Some(wrk),
            daemon: Some(figures),
            shadow_received,
            ..Measured::default()
        })
    }

    fn nginx(&self, load: Load, shadow: ShadowState) -> anyhow::Result<Measured> {
        let nginx = Nginx::start(free_port()?, self.production, self.shadow_addr(shadow))?;
        let shadow_before = self.shadow_count(shadow)?;
        let wrk = self.wrk(load, nginx.listen)?;
        // Mirror subrequests still in flight finish within milliseconds on a healthy shadow.
        std::thread::sleep(Duration::from_millis(300));
        let shadow_received = match (shadow_before, self.shadow_count(shadow)?) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before + 1)),
            _ => None,
        };
        drop(nginx);
        Ok(Measured {
            wrk: Some(wrk),
            shadow_received,
            ..Measured::default()
        })
    }

    fn tcpdump(&self, load: Load) -> anyhow::Result<Measured> {
        let tcpdump = Tcpdump::start(self.dir, self.production.port())?;
        let wrk = self.wrk(load, self.production)?;
        let counts = tcpdump.stop()?;
        Ok(Measured {
            wrk: Some(wrk),
            tcpdump: Some(counts),
            ..Measured::default()
        })
    }

    fn idle_flows(&self, connections: usize, tag: &str) -> anyhow::Result<Measured> {
        let daemon = Shadowd::start(self, ShadowState::Healthy, tag)?;
        let before = memory(daemon.pid)?;
        let started = Instant::now();
        let request = post_request(INFER_PATH, SMALL_BODY);
        let open = IdleConnections::open(self.production, connections, &request)?;
        let open_time = started.elapsed();
        let (_, _) = settle(daemon.admin, open.len() as f64)?;
        // Idle: nothing moves; let the daemon's memory settle.
        std::thread::sleep(Duration::from_secs(1));
        let metrics = daemon.metrics()?;
        let with = memory(daemon.pid)?;
        drop(open);
        drop(daemon);
        Ok(Measured {
            idle: Some(Idle {
                connections,
                before,
                with,
                flows_active: metrics.get("shadowtap_flows_active"),
                exchanges: accounted(&metrics),
                open_time,
            }),
            ..Measured::default()
        })
    }

    /// [`answers_so_far`] of the shadow, if it is the healthy one.
    fn shadow_count(&self, shadow: ShadowState) -> anyhow::Result<Option<u64>> {
        if shadow != ShadowState::Healthy {
            return Ok(None);
        }
        answers_so_far(self.shadow_healthy).map(Some)
    }
}

/// How many inference requests the demo model at `addr` answered before this probe. The demo
/// model numbers its answers (`"id":"v1-N"`, N counting from 0), so one probe request reads the
/// count (and adds one to it).
fn answers_so_far(addr: SocketAddr) -> anyhow::Result<u64> {
    let (status, body) = shadowtap_test_support::http::post(
        addr,
        INFER_PATH,
        "application/json",
        SMALL_BODY.as_bytes(),
    )
    .with_context(|| format!("probing the model at {addr}"))?;
    if status != 200 {
        bail!("the model at {addr} answered the probe with {status}: {body}");
    }
    answer_number(&body).with_context(|| format!("no answer number in {addr}'s answer: {body}"))
}

/// Connections that serve `target` requests/s when `connections` served `served`: scaled
/// by the shortfall, never fewer than before and at most twice as many.
fn calibrated_connections(target: f64, connections: usize, served: f64) -> usize {
    if served <= 0.0 {
        return connections;
    }
    let scaled = (connections as f64 * target / served).round() as usize;
    scaled.clamp(connections, connections * 2)
}

/// N of a demo model answer's `"id":"vX-N"`.
fn answer_number(body: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("id")?.as_str()?.rsplit_once('-')?.1.parse().ok()
}

/// A `shadowd run` tapping production, started fresh (its counters at zero); stopped on drop.
struct Shadowd {
    _procs: Processes,
    pid: u32,
    admin: SocketAddr,
}

impl Shadowd {
    fn start(bench: &Bench<'_>, shadow: ShadowState, tag: &str) -> anyhow::Result<Shadowd> {
        let admin = free_port()?;
        let mut procs = Processes::default();
        let log = log_path(bench.dir, tag);
        let child = spawn_logged(
            Command::new(bench.bin.join("shadowd"))
                .args(["run", "--interface", "lo", "--port"])
                .arg(bench.production.port().to_string())
                .args(["--shadow", &format!("http://{}", bench.shadow_addr(shadow))])
                .args(["--admin-addr", &admin.to_string(), "--preset", "kserve-v2"])
                .env("SHADOWD_LOG", "warn"),
            &log,
        )?;
        let pid = child.id();
        procs.push("shadowd", child);
        wait_ready(admin, "/healthz", &mut procs)
            .with_context(|| format!("shadowd did not start; see {}", log.display()))?;
        // Start-up work (loading, attaching, first scrape) is over before the window opens.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Shadowd {
            _procs: procs,
            pid,
            admin,
        })
    }

    fn metrics(&self) -> anyhow::Result<Metrics> {
        Ok(Metrics::parse(&http_get(self.admin, "/metrics")?.1))
    }
}

fn log_path(dir: &Path, tag: &str) -> PathBuf {
    dir.join(format!("shadowd-{tag}.log"))
}

/// Exchanges the daemon accounted for: mirrored (any result) or skipped (any reason).
fn accounted(m: &Metrics) -> f64 {
    m.sum("shadowtap_mirrored_requests_total", &[]) + m.sum("shadowtap_mirror_skipped_total", &[])
}

/// Polls /metrics until `served` exchanges are accounted for, or the count stops moving for a
/// second; at most 10 s. Returns the last metrics and whether all were accounted for.
fn settle(admin: SocketAddr, served: f64) -> anyhow::Result<(Metrics, bool)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut since) = (-1.0, Instant::now());
    loop {
        let metrics = Metrics::parse(&http_get(admin, "/metrics")?.1);
        let done = accounted(&metrics);
        if done >= served {
            return Ok((metrics, true));
        }
        if done != last {
            (last, since) = (done, Instant::now());
        }
        if since.elapsed() >= Duration::from_secs(1) || Instant::now() >= deadline {
            return Ok((metrics, false));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_body_is_one_mib_of_valid_json_with_the_small_request_inside() {
        let body = large_body();
        assert_eq!(body.len(), LARGE_BODY_BYTES);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let small: serde_json::Value = serde_json::from_str(SMALL_BODY).unwrap();
        assert_eq!(v["inputs"], small["inputs"]);
        assert!(v["parameters"]["padding"].as_str().unwrap().len() > 1_000_000);
        // wrk's Lua long bracket must not end inside the body.
        assert!(!body.contains("]==]"));
    }

    #[test]
    fn calibration_scales_connections_by_the_shortfall_within_bounds() {
        // 100 connections served 8,000/s of 10,000: 125.
        assert_eq!(calibrated_connections(10_000.0, 100, 8_000.0), 125);
        // Never fewer, never more than twice.
        assert_eq!(calibrated_connections(10_000.0, 100, 12_000.0), 100);
        assert_eq!(calibrated_connections(10_000.0, 100, 1_000.0), 200);
        assert_eq!(calibrated_connections(10_000.0, 100, 0.0), 100);
    }

    #[test]
    fn answer_numbers_are_read_from_demo_model_ids() {
        assert_eq!(
            answer_number(r#"{"model_name":"wine-quality","id":"v2-41","outputs":[]}"#),
            Some(41)
        );
        assert_eq!(answer_number(r#"{"id":"nope"}"#), None);
        assert_eq!(answer_number("{"), None);
    }

    #[test]
    fn daemon_figures_are_grouped_by_label() {
        let m = Metrics::parse(
            "shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"ok\"} 90\n\
             shadowtap_mirrored_requests_total{protocol=\"h2\",result=\"ok\"} 5\n\
             shadowtap_mirrored_requests_total{protocol=\"http1\",result=\"timeout\"} 2\n\
             shadowtap_capture_dropped_total{stage=\"capture\"} 3\n\
             shadowtap_capture_dropped_total{stage=\"reassembly\"} 0\n\
             shadowtap_mirror_skipped_total{reason=\"queue_full\"} 7\n",
        );
        let d = Daemon::from_metrics(&m);
        assert_eq!(d.mirrored_ok(), 95.0);
        assert_eq!(d.mirrored.get("timeout"), Some(&2.0));
        assert_eq!(d.dropped_total(), 3.0);
        assert_eq!(d.skipped.get("queue_full"), Some(&7.0));
        assert_eq!(accounted(&m), 104.0);
    }
}
