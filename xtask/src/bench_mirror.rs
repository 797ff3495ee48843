//! `cargo xtask bench mirror`: what mirroring costs and whether it keeps up. The demo models
//! serve on loopback (v1 production, v2 shadow); wrk offers a paced load of OIP inference POSTs
//! to production. Each step runs twice: untapped (baseline), then with `shadowd run` tapping
//! production and mirroring to the shadow (a fresh daemon per step, so its counters start at
//! zero). A row reports served and mirrored requests, the mirrored/served ratio, the daemon's
//! CPU per mirrored request and memory (from /proc), production latency tapped vs untapped, and
//! anything dropped or skipped. The CPU that other work on the host uses meanwhile is measured
//! too (from /proc/stat): above a quarter of a core the latency ratios measure the host rather
//! than the tap, so such a step is repeated (at most three times) and the quietest run is kept.

use crate::bench_proc::{Memory, cpu_time, machine_busy_time, memory, self_and_children_cpu_time};
use crate::bench_wrk::{Pace, WrkResult};
use crate::services::{Processes, free_port, http_get, spawn_logged, wait_ready};
use anyhow::{Context, bail};
use shadowtap_test_support::prom::Metrics;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The model route and a valid Open Inference Protocol body (one wine, 11 FP64 features).
const INFER_PATH: &str = "/v2/models/wine-quality/infer";
const INFER_BODY: &str = r#"{"inputs":[{"name":"input-0","shape":[1,11],"datatype":"FP64","data":[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]}]}"#;

/// How long the daemon's idle CPU use is measured before each tapped run.
const IDLE_WINDOW: Duration = Duration::from_millis(1500);

/// Other work on the host above this many cores makes a step's latency ratios unreliable.
const QUIET_CORES: f64 = 0.25;

/// Attempts per step when other work makes it noisy.
const ATTEMPTS: usize = 3;

/// One offered load.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub requests_per_second: f64,
    pub seconds: u64,
}

/// The tapped half of a step: what shadowd did while wrk ran.
struct Tapped {
    wrk: WrkResult,
    metrics: Metrics,
    cpu: Duration,
    wall: Duration,
    memory: Memory,
    /// The daemon's CPU use with no traffic, as a fraction of one core.
    idle_cpu: f64,
    /// Cores used by other work on the machine while wrk ran.
    others: f64,
}

/// One measured step.
struct Row {
    pace: Pace,
    base: WrkResult,
    /// Cores used by other work on the machine during the baseline.
    base_others: f64,
    tapped: Tapped,
}

impl Row {
    fn mirrored(&self) -> f64 {
        self.tapped
            .metrics
            .sum("shadowtap_mirrored_requests_total", &[("result", "ok")])
    }
    fn ratio(&self) -> f64 {
        self.mirrored() / (self.tapped.wrk.requests as f64).max(1.0)
    }
    fn cpu_us_per_mirrored(&self) -> f64 {
        self.tapped.cpu.as_secs_f64() * 1e6 / self.mirrored().max(1.0)
    }
    fn dropped(&self) -> f64 {
        self.tapped
            .metrics
            .sum("shadowtap_capture_dropped_total", &[])
    }
    fn skipped(&self) -> f64 {
        self.tapped
            .metrics
            .sum("shadowtap_mirror_skipped_total", &[])
    }
    fn p99_ratio(&self) -> f64 {
        ms(self.tapped.wrk.p99) / ms(self.base.p99).max(1e-9)
    }
    /// Whether other work on the host used more than [`QUIET_CORES`] during either run, which
    /// makes the latency ratios noise rather than the tap's cost.
    fn noisy(&self) -> bool {
        self.base_others.max(self.tapped.others) > QUIET_CORES
    }
}

/// Runs every step with `bin` holding release `shadowd` and `demo-model`; prints the table.
pub fn run(bin: &Path, steps: &[Step]) -> anyhow::Result<()> {
    if !crate::util::is_root() {
        bail!(
            "bench mirror loads an eBPF program: run it as root (sudo -E cargo xtask bench mirror)"
        );
    }
    // The logs of the models and of every daemon: removed after a successful run, kept after a
    // failed one (whose error names them).
    let dir = tempfile::Builder::new()
        .prefix("shadowtap-bench-mirror-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let result = run_in(bin, steps, dir.path());
    if result.is_err() {
        let kept = dir.keep();
        return result.with_context(|| format!("logs kept in {}", kept.display()));
    }
    result
}

/// [`run`], with the logs in `dir`.
fn run_in(bin: &Path, steps: &[Step], dir: &Path) -> anyhow::Result<()> {
    let mut models = Processes::default();
    let started = crate::services::start_demo_models(bin, dir, &mut models, false)?;
    let (production, shadow) = (started.production, started.shadow);
    let model_pids = started.pids;
    let script = crate::bench_wrk::write_script(dir, INFER_BODY)?;
    let url = format!("http://{production}{INFER_PATH}");
    println!(
        "bench mirror: wrk → {url} (demo-model v1), shadowd mirroring to http://{shadow} (v2); \
         {} CPUs, load average {}; logs in {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        dir.display()
    );
    eprintln!("bench mirror: warming up production (1 s, untapped)");
    crate::bench_wrk::run(&script, &url, Pace::new(500.0, 1))?;

    let setup = Setup {
        bin,
        dir,
        model_pids: &model_pids,
        production,
        shadow,
        script: &script,
        url: &url,
    };
    let mut rows = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let pace = Pace::new(step.requests_per_second, step.seconds);
        let label = format!(
            "step {}/{}: {:.0} req/s offered ({} connections × 1 per {} ms), {} s",
            i + 1,
            steps.len(),
            pace.offered(),
            pace.connections,
            crate::bench_wrk::PERIOD_MS,
            pace.seconds
        );
        // On a shared host, other work makes latency noise: repeat a noisy step (bounded) and
        // keep the quietest attempt.
        let mut best: Option<Row> = None;
        for attempt in 1..=ATTEMPTS {
            let row = setup.step(pace, &label)?;
            models.check_running()?;
            let others = row.base_others.max(row.tapped.others);
            let quiet = !row.noisy();
            if best
                .as_ref()
                .is_none_or(|b| others < b.base_others.max(b.tapped.others))
            {
                best = Some(row);
            }
            if quiet {
                break;
            }
            if attempt < ATTEMPTS {
                eprintln!(
                    "bench mirror: {label}: other work used {others:.2} cores meanwhile; repeating ({}/{ATTEMPTS})",
                    attempt + 1
                );
            }
        }
        rows.extend(best);
    }
    print_table(&rows);
    println!("{}", conclusion(&rows));
    drop(models);
    Ok(())
}

/// What every step runs against.
#[derive(Clone, Copy)]
struct Setup<'a> {
    bin: &'a Path,
    dir: &'a Path,
    model_pids: &'a [u32],
    production: SocketAddr,
    shadow: SocketAddr,
    script: &'a Path,
    url: &'a str,
}

impl Setup<'_> {
    /// One untapped and one tapped run at `pace`.
    fn step(&self, pace: Pace, label: &str) -> anyhow::Result<Row> {
        eprintln!("bench mirror: {label}: untapped");
        let meter = OthersMeter::start(self.model_pids)?;
        let base = crate::bench_wrk::run(self.script, self.url, pace)?;
        let base_others = meter.cores(self.model_pids)?;
        eprintln!(
            "bench mirror: {label}: untapped served {} ({:.0}/s), p99 {:.2} ms, max {:.2} ms; now tapped",
            base.requests,
            base.rate(),
            ms(base.p99),
            ms(base.max)
        );
        let tapped = run_tapped(self, pace)?;
        let row = Row {
            pace,
            base,
            base_others,
            tapped,
        };
        eprintln!(
            "bench mirror: {label}: tapped served {}, p99 {:.2} ms, max {:.2} ms; mirrored {} ({:.1}%), {:.0} µs CPU each",
            row.tapped.wrk.requests,
            ms(row.tapped.wrk.p99),
            ms(row.tapped.wrk.max),
            row.mirrored(),
            row.ratio() * 100.0,
            row.cpu_us_per_mirrored()
        );
        Ok(row)
    }
}

/// Starts shadowd, runs wrk, waits for the mirror to finish the backlog, and reads the daemon's
/// metrics and /proc figures. The daemon is stopped (SIGTERM) when this returns, on every path.
fn run_tapped(setup: &Setup<'_>, pace: Pace) -> anyhow::Result<Tapped> {
    let Setup {
        bin,
        dir,
        model_pids,
        production,
        shadow,
        script,
        url,
    } = *setup;
    let admin = free_port()?;
    let mut daemon = Processes::default();
    let child = spawn_logged(
        Command::new(bin.join("shadowd"))
            .args(["run", "--interface", "lo", "--port"])
            .arg(production.port().to_string())
            .args(["--shadow", &format!("http://{shadow}")])
            .args(["--admin-addr", &admin.to_string(), "--preset", "kserve-v2"])
            .env("SHADOWD_LOG", "warn"),
        &log_path(dir, pace),
    )?;
    let pid = child.id();
    daemon.push("shadowd", child);
    wait_ready(admin, "/healthz", &mut daemon).context("shadowd did not start")?;

    // What the daemon costs with no traffic, once start-up has settled.
    std::thread::sleep(Duration::from_millis(500));
    let idle_from = cpu_time(pid)?;
    std::thread::sleep(IDLE_WINDOW);
    let cpu_before = cpu_time(pid)?;
    let ours: Vec<u32> = model_pids.iter().copied().chain([pid]).collect();
    let meter = OthersMeter::start(&ours)?;
    let idle_cpu = (cpu_before.saturating_sub(idle_from)).as_secs_f64() / IDLE_WINDOW.as_secs_f64();

    let started = Instant::now();
    let wrk = crate::bench_wrk::run(script, url, pace)?;
    let others = meter.cores(&ours)?;
    daemon.check_running()?;
    let metrics = settle(admin, wrk.requests)?;
    let wall = started.elapsed();
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    let memory = memory(pid)?;
    Ok(Tapped {
        wrk,
        metrics,
        cpu,
        wall,
        memory,
        idle_cpu,
        others,
    })
}

/// Measures the CPU that the rest of the machine (everything but this process, its children
/// already waited for, and `pids`) uses over a window: other work competes with production for
/// the cores and makes its latency noisy.
struct OthersMeter {
    machine: Duration,
    ours: Duration,
    started: Instant,
}

impl OthersMeter {
    fn start(pids: &[u32]) -> anyhow::Result<Self> {
        Ok(OthersMeter {
            machine: machine_busy_time()?,
            ours: ours_cpu_time(pids)?,
            started: Instant::now(),
        })
    }

    /// Cores used by others since `start` (wrk, once waited for, counts as ours).
    fn cores(&self, pids: &[u32]) -> anyhow::Result<f64> {
        let machine = machine_busy_time()?.saturating_sub(self.machine);
        let ours = ours_cpu_time(pids)?.saturating_sub(self.ours);
        Ok(machine.saturating_sub(ours).as_secs_f64()
            / self.started.elapsed().as_secs_f64().max(1e-9))
    }
}

fn ours_cpu_time(pids: &[u32]) -> anyhow::Result<Duration> {
    let mut total = self_and_children_cpu_time()?;
    for &pid in pids {
        total += cpu_time(pid)?;
    }
    Ok(total)
}

fn log_path(dir: &Path, pace: Pace) -> PathBuf {
    dir.join(format!("shadowd-{:.0}rps.log", pace.offered()))
}

/// Polls /metrics until every served request is accounted for (mirrored or skipped), or the
/// count stops moving for a second; at most 10 s. Returns the last metrics.
fn settle(admin: SocketAddr, served: u64) -> anyhow::Result<Metrics> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut since) = (-1.0, Instant::now());
    loop {
        let metrics = Metrics::parse(&http_get(admin, "/metrics")?.1);
        let done = metrics.sum("shadowtap_mirrored_requests_total", &[])
            + metrics.sum("shadowtap_mirror_skipped_total", &[]);
        if done != last {
            (last, since) = (done, Instant::now());
        }
        if done >= served as f64
            || since.elapsed() >= Duration::from_secs(1)
            || Instant::now() >= deadline
        {
            return Ok(metrics);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:>7} | {:>6} {:>6} {:>7} | {:>8} {:>7} {:>7} | {:>9} {:>6} {:>6} | {:>7} {:>7} | {:>7} {:>6} | {:>7} {:>6} | {:>5} {:>7} {:>6} | {:>8} {:>7}",
        "offered",
        "base/s",
        "tap/s",
        "served",
        "mirrored",
        "mirr/s",
        "ratio",
        "CPU µs/mr",
        "CPU %",
        "idle %",
        "RSS MiB",
        "peak",
        "p50 base",
        "×",
        "p99 base",
        "×",
        "drops",
        "skipped",
        "errors",
        "oth base",
        "oth tap"
    );
    for r in rows {
        let t = &r.tapped;
        let errors = t.wrk.non_2xx + t.wrk.socket_errors + r.base.non_2xx + r.base.socket_errors;
        println!(
            "{:>7.0} | {:>6.0} {:>6.0} {:>7} | {:>8.0} {:>7.0} {:>7.4} | {:>9.1} {:>6.1} {:>6.1} | {:>7.1} {:>7.1} | {:>6.3}ms {:>6.2} | {:>6.3}ms {:>6.2} | {:>5.0} {:>7.0} {:>6} | {:>8.2} {:>7.2}",
            r.pace.offered(),
            r.base.rate(),
            t.wrk.rate(),
            t.wrk.requests,
            r.mirrored(),
            r.mirrored() / t.wrk.duration.as_secs_f64().max(1e-9),
            r.ratio(),
            r.cpu_us_per_mirrored(),
            t.cpu.as_secs_f64() / t.wall.as_secs_f64().max(1e-9) * 100.0,
            t.idle_cpu * 100.0,
            mib(t.memory.rss_bytes),
            mib(t.memory.peak_rss_bytes),
            ms(r.base.p50),
            ms(t.wrk.p50) / ms(r.base.p50).max(1e-9),
            ms(r.base.p99),
            r.p99_ratio(),
            r.dropped(),
            r.skipped(),
            errors,
            r.base_others,
            t.others
        );
    }
    for r in rows.iter().filter(|r| r.noisy()) {
        println!(
            "  at {:.0} req/s: other work used {:.2} / {:.2} cores during the untapped / tapped \
             run: its latency ratios measure the host, not the tap",
            r.pace.offered(),
            r.base_others,
            r.tapped.others
        );
    }
    for r in rows {
        for (name, label) in [
            ("shadowtap_capture_dropped_total", "stage"),
            ("shadowtap_mirror_skipped_total", "reason"),
            ("shadowtap_mirrored_requests_total", "result"),
        ] {
            for (labels, value) in r.tapped.metrics.series(name) {
                let what = labels.get(label).map_or("?", String::as_str);
                if value > 0.0 && !(label == "result" && what == "ok") {
                    println!(
                        "  at {:.0} req/s: {name}{{{label}=\"{what}\"}} {value}",
                        r.pace.offered()
                    );
                }
            }
        }
    }
    println!(
        "  served = wrk's completed requests (tapped run); ratio = mirrored ok / served; \
         CPU = shadowd utime+stime over the run and its drain, per mirrored request and as % of \
         one core (idle % = with no traffic, before the run); RSS = VmRSS after the run, peak = \
         VmHWM; × = tapped / untapped production latency (wrk); oth = cores used by other \
         work on the machine during the untapped / tapped run (noise: it competes with production)"
    );
}

/// One line summing up the steps: does the mirror keep up, at what cost to the daemon and to
/// production.
fn conclusion(rows: &[Row]) -> String {
    let Some(top) = rows
        .iter()
        .max_by(|a, b| a.pace.offered().total_cmp(&b.pace.offered()))
    else {
        return "conclusion: no steps ran".into();
    };
    let worst_ratio = rows.iter().map(Row::ratio).fold(f64::INFINITY, f64::min);
    let max_cpu = rows
        .iter()
        .map(Row::cpu_us_per_mirrored)
        .fold(0.0, f64::max);
    let lost: f64 = rows.iter().map(|r| r.dropped() + r.skipped()).sum();
    let quiet: Vec<&Row> = rows.iter().filter(|r| !r.noisy()).collect();
    let latency = match quiet.iter().map(|r| r.p99_ratio()).reduce(f64::max) {
        Some(worst) => format!(
            "production p99 at worst ×{worst:.2} of untapped in the {} of {} steps run on a \
             quiet host",
            quiet.len(),
            rows.len()
        ),
        None => format!(
            "latency ratios not conclusive: other work on the host used over {QUIET_CORES} \
             cores during every step"
        ),
    };
    let keeps_up = worst_ratio >= 0.99 && lost == 0.0;
    format!(
        "conclusion: {} (up to {:.0} req/s offered): worst mirrored/served {:.2}%, at most \
         {max_cpu:.0} µs daemon CPU per mirrored request, {lost} dropped or skipped; {latency}",
        if keeps_up {
            "shadowd kept up at every step"
        } else {
            "shadowd fell behind"
        },
        top.pace.offered(),
        worst_ratio * 100.0,
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(offered: f64, mirrored: u64, base_others: f64, tapped_others: f64, p99_us: u64) -> Row {
        let wrk = |p99| WrkResult {
            requests: 1000,
            duration: Duration::from_secs(5),
            p99: Duration::from_micros(p99),
            ..WrkResult::default()
        };
        Row {
            pace: Pace::new(offered, 5),
            base: wrk(500),
            base_others,
            tapped: Tapped {
                wrk: wrk(p99_us),
                metrics: Metrics::parse(&format!(
                    "shadowtap_mirrored_requests_total{{result=\"ok\"}} {mirrored}\n\
                     shadowtap_mirror_skipped_total{{reason=\"queue_full\"}} {}\n",
                    1000 - mirrored
                )),
                cpu: Duration::from_millis(100),
                wall: Duration::from_secs(6),
                memory: Memory::default(),
                idle_cpu: 0.0,
                others: tapped_others,
            },
        }
    }

    #[test]
    fn row_figures() {
        let r = row(500.0, 1000, 0.0, 0.0, 600);
        assert_eq!(r.ratio(), 1.0);
        assert_eq!(r.cpu_us_per_mirrored(), 100.0);
        assert!((r.p99_ratio() - 1.2).abs() < 1e-9);
        assert!(!r.noisy());
        assert!(row(500.0, 1000, 0.1, 0.9, 600).noisy());
    }

    #[test]
    fn conclusion_judges_latency_on_quiet_steps_only() {
        let rows = [
            row(500.0, 1000, 0.0, 0.1, 550),
            row(2000.0, 1000, 1.5, 0.0, 50_000),
        ];
        let c = conclusion(&rows);
        assert!(c.contains("kept up at every step (up to 2000 req/s"), "{c}");
        assert!(c.contains("×1.10 of untapped in the 1 of 2 steps"), "{c}");
        let c = conclusion(&[row(500.0, 900, 0.0, 0.0, 500)]);
        assert!(
            c.contains("fell behind") && c.contains("100 dropped or skipped"),
            "{c}"
        );
        let c = conclusion(&[row(500.0, 1000, 1.0, 1.0, 500)]);
        assert!(c.contains("not conclusive"), "{c}");
    }
}
