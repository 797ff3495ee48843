//! `cargo xtask bench [--quick] [SCENARIO...]`: production (demo-model v1) on loopback under wrk,
//! alone (baseline), tapped by `shadowd` mirroring to the shadow (demo-model v2), behind nginx
//! `mirror` to the same shadow, and captured by tcpdump, side by side. Each repetition runs
//! every job of the plan once (the variants of one load one after the other), so noise hits all
//! variants alike; ratios are taken per repetition against that repetition's baseline. Writes
//! `target/bench/results.json` and `results.md`, prints the tables and the issue's target
//! table, and (full mode only) rewrites the README's "Performance" section.

use crate::bench_plan::{Job, Load, MAX_RATE_CONNECTIONS, Plan, Rate, Scenario};
use crate::bench_proc::{cpu_time, machine_busy_time};
use crate::bench_report::{Machine, README_END, README_START, Results};
use crate::bench_run::{Bench, INFER_PATH, Measured, SMALL_BODY, large_body};
use crate::bench_wrk::Offer;
use crate::services::{Processes, free_port, spawn_logged, start_demo_models, wait_ready};
use crate::util::{is_root, output, workspace_root};
use anyhow::{Context, bail};
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Quiet time before each job.
const PAUSE_BETWEEN_JOBS: Duration = Duration::from_millis(700);

/// Flags of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Short runs, one repetition, fewer points: checks that the harness works (under 3
    /// minutes); its numbers are not for quoting. Never rewrites the README.
    #[arg(long)]
    pub quick: bool,
    /// Do not rewrite the README's "Performance" section (full mode rewrites it by default).
    #[arg(long)]
    pub no_readme: bool,
    /// Run the debug build of `shadowd` and the models instead of the release build (what
    /// `cargo xtask test` does, to skip a release build; only with --quick).
    #[arg(long, requires = "quick")]
    pub debug_build: bool,
    /// Repetitions of every job (default: 5, or 1 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
}

/// Where the results go.
pub fn results_dir() -> std::path::PathBuf {
    crate::build::target_dir().join("bench")
}

/// Runs the chosen scenarios and writes the results.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut plan = crate::bench_plan::plan(&args.scenarios, args.quick);
    if let Some(reps) = args.reps {
        plan.reps = reps.max(1);
    }
    if !plan.jobs.is_empty() && !is_root() {
        bail!(
            "cargo xtask bench loads an eBPF program and starts tcpdump: run it as root \
             (sudo -E cargo xtask bench)"
        );
    }
    let machine = machine();
    eprintln!(
        "bench: {} mode, scenarios {}, {} jobs × {} repetition(s) of {} s; {} cores, kernel {}, \
         load average {}",
        if plan.quick { "quick" } else { "full" },
        plan.scenarios
            .iter()
            .map(|s| s.key())
            .collect::<Vec<_>>()
            .join(" "),
        plan.jobs.len(),
        plan.reps,
        plan.seconds,
        machine.cores,
        machine.kernel,
        machine.load_average
    );
    let parse = plan.scenarios.contains(&Scenario::Parse).then(|| {
        eprintln!("bench: parse (criterion: cargo bench -p shadow-core --bench parse)");
        crate::bench_parse::run(plan.quick, args.debug_build).map_err(|e| format!("{e:#}"))
    });
    let jobs = if plan.jobs.is_empty() {
        JobResults::default()
    } else {
        run_jobs(&plan, args.debug_build)?
    };
    let results = Results {
        plan,
        machine,
        runs: jobs.runs,
        paces: jobs.paces,
        parse,
        elapsed: started.elapsed(),
    };
    write_outputs(&results, !args.quick && !args.no_readme)?;
    let failures = results.failures();
    if !failures.is_empty() {
        bail!(
            "{} run(s) failed (listed in the report and in {}); first: {}, repetition {}: {}",
            failures.len(),
            results_dir().join("results.json").display(),
            failures[0].0,
            failures[0].1,
            failures[0].2
        );
    }
    Ok(())
}

/// What the jobs measured.
#[derive(Default)]
struct JobResults {
    /// Per job, one entry per repetition (the error text of a failed run).
    runs: BTreeMap<Job, Vec<Result<Measured, String>>>,
    /// The calibrated pace of each paced load.
    paces: BTreeMap<Load, crate::bench_wrk::Pace>,
}

/// Starts the models, then runs every job of every repetition. The logs are removed after a
/// successful bench and kept (and named) after a failed one.
fn run_jobs(plan: &Plan, debug_build: bool) -> anyhow::Result<JobResults> {
    let bin = if debug_build {
        crate::build::debug()?
    } else {
        crate::build::release()?
    };
    let dir = tempfile::Builder::new()
        .prefix("shadowtap-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let result = run_jobs_in(plan, &bin, dir.path());
    let failed = match &result {
        Err(_) => true,
        Ok(r) => r.runs.values().flatten().any(Result::is_err),
    };
    if failed {
        let kept = dir.keep();
        eprintln!("bench: logs kept in {}", kept.display());
        return result.with_context(|| format!("logs kept in {}", kept.display()));
    }
    result
}

fn run_jobs_in(plan: &Plan, bin: &Path, dir: &Path) -> anyhow::Result<JobResults> {
    raise_open_files_limit(plan)?;
    let mut models = Processes::default();
    let mut bench = start_services(plan, bin, dir, &mut models)?;
    calibrate_paced_loads(plan, &mut bench)?;
    let mut runs: BTreeMap<Job, Vec<_>> = BTreeMap::new();
    let total = plan.jobs.len();
    let started = Instant::now();
    for rep in 1..=plan.reps {
        for (i, &job) in plan.jobs.iter().enumerate() {
            // The previous job's teardown (a daemon stopping, connections closing, a capture
            // file deleted) is over before this one starts.
            std::thread::sleep(PAUSE_BETWEEN_JOBS);
            let eta = eta(started.elapsed(), (rep - 1) * total + i, plan.reps * total);
            eprintln!(
                "bench: rep {rep}/{} job {}/{total}: {}{eta}",
                plan.reps,
                i + 1,
                job.label()
            );
            let tag = format!("{}-rep{rep}", job.key().replace(['/', '@'], "-"));
            let outcome = run_one(&bench, job, &tag);
            models
                .check_running()
                .context("a model server died during the bench")?;
            match &outcome {
                Ok(m) => eprintln!("bench:   {}", summary(m)),
                Err(e) => eprintln!("bench:   FAILED: {e}"),
            }
            runs.entry(job).or_default().push(outcome);
        }
    }
    drop(models);
    Ok(JobResults {
        runs,
        paces: bench.paces,
    })
}

/// Raises the open-files limit for the idle-flow connections and the model serving them
/// (children inherit it).
fn raise_open_files_limit(plan: &Plan) -> anyhow::Result<()> {
    let idle = plan
        .jobs
        .iter()
        .filter_map(|j| match j {
            Job::IdleFlows { connections } => Some(*connections),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let limit = crate::bench_idle::raise_open_files_limit(idle as libc::rlim_t + 4096)?;
    if (limit as usize) < idle + 1024 {
        bail!(
            "the open-files limit is {limit}, too low for {idle} idle connections; raise the hard \
             limit (ulimit -Hn) to at least {}",
            idle + 4096
        );
    }
    Ok(())
}

/// Starts production, the healthy and the slow shadow (owned by `models`), picks the dead
/// shadow's port, writes the wrk scripts and warms production up.
fn start_services<'a>(
    plan: &Plan,
    bin: &'a Path,
    dir: &'a Path,
    models: &mut Processes,
) -> anyhow::Result<Bench<'a>> {
    let demo = start_demo_models(bin, dir, models, false)?;
    let slow = free_port()?;
    let child = spawn_logged(
        Command::new(bin.join("demo-model"))
            .args(["--model", "v2", "--listen", &slow.to_string()])
            .args(["--delay-ms", "1000"]),
        &dir.join("model-v2-slow.log"),
    )?;
    models.push("slow shadow model v2", child);
    wait_ready(slow, "/v2/health/ready", models).context("the slow shadow did not start")?;
    eprintln!("slow shadow model v2 (1 s per answer) serving on http://{slow}");
    // Nobody listens here: bound once to pick it, then released.
    let down = free_port()?;

    let bench = Bench {
        bin,
        dir,
        production: demo.production,
        production_pid: demo.pids[0],
        shadow_healthy: demo.shadow,
        shadow_slow: slow,
        shadow_down: down,
        small: crate::bench_wrk::write_scripts(dir, "small", SMALL_BODY)?,
        large: crate::bench_wrk::write_scripts(dir, "large", &large_body())?,
        seconds: plan.seconds,
        paces: BTreeMap::new(),
    };
    eprintln!("bench: warming up production (1 s small, 1 s 1 MiB, max rate, untapped)");
    let url = format!("http://{}{INFER_PATH}", demo.production);
    for scripts in [&bench.small, &bench.large] {
        let warm_up = Offer::Max {
            connections: MAX_RATE_CONNECTIONS,
            seconds: 1,
        };
        crate::bench_wrk::run(scripts, &url, warm_up)?;
    }
    Ok(bench)
}

/// Calibrates the connections of every paced load of the plan on production alone.
fn calibrate_paced_loads(plan: &Plan, bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let paced: BTreeSet<Load> = plan
        .jobs
        .iter()
        .filter_map(|j| match j {
            Job::Load { load, .. } if matches!(load.rate, Rate::Fixed(_)) => Some(*load),
            _ => None,
        })
        .collect();
    for load in paced {
        let (first, served) = bench.calibrate(load)?;
        let connections = bench.paces.get(&load).map_or(0, |p| p.connections);
        eprintln!(
            "bench: {}: {connections} connections pausing {} ms (production alone served \
             {served:.0}/s with {})",
            load.label(),
            first.period_ms,
            first.connections
        );
    }
    Ok(())
}

/// Runs one job and adds what production's server and the whole machine spent meanwhile.
fn run_one(bench: &Bench<'_>, job: Job, tag: &str) -> Result<Measured, String> {
    let fail = |e: anyhow::Error| format!("{e:#}");
    let production_before = cpu_time(bench.production_pid).map_err(fail)?;
    let (machine_before, wall) = (machine_busy_time().map_err(fail)?, Instant::now());
    let mut m = bench.run(job, tag).map_err(fail)?;
    m.production_cpu = cpu_time(bench.production_pid)
        .ok()
        .map(|t| t.saturating_sub(production_before));
    m.machine_busy_cores = machine_busy_time().ok().map(|t| {
        t.saturating_sub(machine_before).as_secs_f64() / wall.elapsed().as_secs_f64().max(1e-9)
    });
    Ok(m)
}

/// ` (about N s left)` from the time the first `done` of `total` jobs took.
fn eta(elapsed: Duration, done: usize, total: usize) -> String {
    if done == 0 {
        return String::new();
    }
    let left = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    format!(" (about {left:.0} s left)")
}

/// One line about a finished run.
fn summary(m: &Measured) -> String {
    let mut parts = Vec::new();
    if let Some(w) = m.wrk {
        parts.push(format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} errors",
            w.rate(),
            w.p50.as_secs_f64() * 1e3,
            w.p99.as_secs_f64() * 1e3,
            w.p99_9.as_secs_f64() * 1e3,
            w.non_2xx + w.socket_errors
        ));
    }
    if let (Some(d), Some(w)) = (&m.daemon, m.wrk) {
        let per_mirrored = if d.mirrored_ok() >= 100.0 {
            format!(
                " ({:.1} µs per mirrored)",
                d.cpu.as_secs_f64() * 1e6 / d.mirrored_ok()
            )
        } else {
            String::new()
        };
        parts.push(format!(
            "mirrored {:.0} of {} ({:.1}%), {:.0} dropped, {:.0} skipped; shadowd CPU {:.2} s{per_mirrored}{}",
            d.mirrored_ok(),
            w.requests,
            d.mirrored_ok() / (w.requests as f64).max(1.0) * 100.0,
            d.dropped_total(),
            d.skipped.values().sum::<f64>(),
            d.cpu.as_secs_f64(),
            d.kernel.map_or(String::new(), |k| format!(
                ", tap {:.0} ns/run",
                k.run_time_ns as f64 / (k.run_cnt as f64).max(1.0)
            ))
        ));
    }
    if let Some(n) = m.shadow_received {
        parts.push(format!("shadow answered {n}"));
    }
    if let Some(t) = m.tcpdump {
        parts.push(format!(
            "tcpdump: {} received, {} dropped by kernel",
            t.received, t.dropped_by_kernel
        ));
    }
    if let Some(i) = m.idle {
        parts.push(format!(
            "{} idle flows: RSS {:.1} MiB (before {:.1} MiB), flows active {:?}",
            i.connections,
            i.with.rss_bytes as f64 / 1048576.0,
            i.before.rss_bytes as f64 / 1048576.0,
            i.flows_active
        ));
    }
    parts.join("; ")
}

/// Writes results.json and results.md, prints the Markdown, and rewrites the README's section
/// when asked.
fn write_outputs(results: &Results, readme: bool) -> anyhow::Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(&results.to_json())?;
    let json_path = dir.join("results.json");
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let md = results.to_markdown();
    let md_path = dir.join("results.md");
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    println!("\n{md}");
    eprintln!(
        "bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    if readme {
        let path = workspace_root().join("README.md");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let Some(updated) = crate::bench_report::replace_readme_section(&text, &md) else {
            bail!(
                "{} lacks the markers `{README_START}` … `{README_END}`; results are in {}",
                path.display(),
                md_path.display()
            );
        };
        std::fs::write(&path, updated)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "bench: rewrote the Performance section of {}",
            path.display()
        );
    }
    Ok(())
}

/// Date, cores, CPU model, kernel and load average now.
fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Machine {
        date: output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        kernel: output(Command::new("uname").arg("-r"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
            .unwrap_or_default(),
    }
}

/// Checks a results file written by `cargo xtask bench` (used by `cargo xtask test` after the
/// quick bench): it parses, and every scenario it ran has entries.
pub fn check_results_file(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let scenarios = v
        .get("scenarios")
        .and_then(serde_json::Value::as_object)
        .context("no `scenarios` object")?;
    for (name, entries) in scenarios {
        let n = entries.as_array().map_or(0, Vec::len);
        if n == 0 {
            bail!("scenario `{name}` has no entries in {}", path.display());
        }
    }
    if v.get("targets")
        .and_then(serde_json::Value::as_array)
        .map(Vec::len)
        != Some(9)
    {
        bail!("{} lacks the 9 target rows", path.display());
    }
    Ok(())
}
