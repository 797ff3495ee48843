//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`, one after another, each for a bounded
//! time; `cargo xtask test` runs the same for a short time each.
//!
//! Each target reads its committed seeds (`fuzz/seeds/<target>/`, never written to) and its
//! working corpus (`fuzz/corpus/<target>/`, not committed: what the fuzzer found interesting
//! grows there and is reused by the next run). libFuzzer's output goes to
//! `fuzz/artifacts/<target>/fuzz.log`; a crash, timeout or memory blow-up is written beside it
//! by libFuzzer and fails the run with its path.

use crate::util::{describe, output, run_cmd, workspace_root};
use anyhow::{Context, bail};
use clap::Args;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Flags of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub time: u64,
    /// Build the targets unoptimised (`cargo fuzz --dev`): much quicker to compile, slower to
    /// fuzz; what `cargo xtask test`'s short runs use.
    #[arg(long)]
    pub dev: bool,
    /// Targets to run (default: every target `cargo fuzz list` shows).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// The libFuzzer dictionary of a target, in `fuzz/`.
fn dictionary(target: &str) -> Option<&'static str> {
    match target {
        "reassembly" | "http_stream" => Some("http.dict"),
        "config" => Some("config.dict"),
        "json_diff" | "prediction" | "compare" => Some("json.dict"),
        _ => None,
    }
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    fuzz(&args.targets, args.time, args.dev)
}

/// Fuzzes `selected` (all targets when empty) for `seconds` each, one after another (`dev`: an
/// unoptimised build); fails naming every finding after all have run.
pub fn fuzz(selected: &[String], seconds: u64, dev: bool) -> anyhow::Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    let targets = targets(&fuzz_dir, selected)?;
    eprintln!(
        "xtask fuzz: building the fuzz targets (nightly, sanitizer and coverage instrumented)"
    );
    let mut build = cargo_fuzz(&fuzz_dir);
    build.arg("build");
    if dev {
        build.arg("--dev");
    }
    if let [only] = targets.as_slice() {
        build.arg(only);
    }
    run_cmd(&mut build)?;

    let started = Instant::now();
    let mut runs = Vec::new();
    for target in &targets {
        eprintln!("xtask fuzz: fuzzing `{target}` for {seconds} s");
        let run = fuzz_one(&fuzz_dir, target, seconds, dev)?;
        eprintln!("xtask fuzz: {}", run.summary());
        if let Some(finding) = &run.finding {
            eprintln!("{}", finding.report(&fuzz_dir, &run));
        }
        runs.push(run);
    }
    let findings: Vec<&Run> = runs.iter().filter(|r| r.finding.is_some()).collect();
    eprintln!(
        "xtask fuzz: {} target(s) in {:.0?}, {} with findings",
        runs.len(),
        started.elapsed(),
        findings.len()
    );
    if !findings.is_empty() {
        let list: Vec<String> = findings
            .iter()
            .map(
                |r| match r.finding.as_ref().and_then(|f| f.artifact.as_ref()) {
                    Some(path) => format!("`{}`: {}", r.target, path.display()),
                    None => format!("`{}`: see {}", r.target, r.log.display()),
                },
            )
            .collect();
        bail!("fuzzing found problems:\n  {}", list.join("\n  "));
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`, without the eBPF build (the `config` target links the
/// daemon).
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir)
        .env("AYA_BUILD_SKIP", "1")
        .args(["+nightly", "fuzz"]);
    cmd
}

/// The targets to run: `selected`, checked against `cargo fuzz list`, or all of them.
fn targets(fuzz_dir: &Path, selected: &[String]) -> anyhow::Result<Vec<String>> {
    if !fuzz_dir.join("Cargo.toml").exists() {
        bail!("no fuzz workspace at {}", fuzz_dir.display());
    }
    let listed = output(cargo_fuzz(fuzz_dir).arg("list"))
        .context("`cargo +nightly fuzz list` failed; run `cargo xtask bootstrap` first")?;
    let all: Vec<String> = listed
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if all.is_empty() {
        bail!(
            "`cargo fuzz list` found no fuzz targets in {}",
            fuzz_dir.display()
        );
    }
    if selected.is_empty() {
        return Ok(all);
    }
    for target in selected {
        if !all.contains(target) {
            bail!(
                "no fuzz target `{target}`; the targets are: {}",
                all.join(", ")
            );
        }
    }
    Ok(selected.to_vec())
}

/// One target's run.
struct Run {
    target: String,
    elapsed: Duration,
    log: PathBuf,
    stats: Stats,
    finding: Option<Finding>,
}

/// What libFuzzer reported at the end.
#[derive(Default)]
struct Stats {
    execs: Option<u64>,
    execs_per_second: Option<u64>,
    coverage: Option<u64>,
    features: Option<u64>,
    corpus: Option<u64>,
    new_units: Option<u64>,
}

/// A failed run: libFuzzer's exit status and the input it saved, if any.
struct Finding {
    status: String,
    artifact: Option<PathBuf>,
    excerpt: Vec<String>,
}

fn fuzz_one(fuzz_dir: &Path, target: &str, seconds: u64, dev: bool) -> anyhow::Result<Run> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = artifacts.join("fuzz.log");
    let log_file =
        File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = cargo_fuzz(fuzz_dir);
    // The working corpus first: libFuzzer adds new inputs to the first directory only.
    cmd.arg("run");
    if dev {
        cmd.arg("--dev");
    }
    cmd.arg(target).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-rss_limit_mb=2048")
        // One input running this long is a finding (a quadratic or stuck parser).
        .arg("-timeout=20")
        .arg("-print_final_stats=1");
    if let Some(dict) = dictionary(target) {
        cmd.arg(format!("-dict={}", fuzz_dir.join(dict).display()));
    }
    let line = describe(&cmd);
    let started = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let finding = (!status.success()).then(|| Finding {
        status: status.to_string(),
        artifact: artifact(&text, fuzz_dir),
        excerpt: excerpt(&text),
    });
    Ok(Run {
        target: target.to_string(),
        elapsed: started.elapsed(),
        log,
        stats: Stats::parse(&text),
        finding,
    })
}

/// The input libFuzzer saved (`Test unit written to <path>`), relative paths taken from
/// `fuzz/`, where cargo-fuzz runs.
fn artifact(log: &str, fuzz_dir: &Path) -> Option<PathBuf> {
    let path = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))?;
    let path = PathBuf::from(path);
    Some(if path.is_absolute() {
        path
    } else {
        fuzz_dir.join(path)
    })
}

/// What went wrong, from libFuzzer's output: the panic message (without its backtrace) and
/// libFuzzer's or the sanitizer's error lines; the last lines when there are none.
fn excerpt(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<&str> = Vec::new();
    if let Some(start) = lines.iter().position(|l| l.contains(" panicked at ")) {
        out.extend(
            lines[start..]
                .iter()
                .take_while(|l| !l.starts_with("stack backtrace:") && !l.starts_with("note: "))
                .take(30),
        );
    }
    out.extend(lines.iter().filter(|l| {
        l.contains("ERROR: libFuzzer:")
            || l.contains("ERROR: AddressSanitizer")
            || l.starts_with("SUMMARY:")
    }));
    if out.is_empty() {
        out = lines[lines.len().saturating_sub(20)..].to_vec();
    }
    out.into_iter().map(String::from).collect()
}

impl Stats {
    fn parse(log: &str) -> Stats {
        let stat = |name: &str| {
            log.lines()
                .rev()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
        };
        // The last status line: `#123 DONE cov: 456 ft: 789 corp: 12/3456b ...`.
        let status = log.lines().rev().find(|l| l.contains(" cov: "));
        let after = |key: &str| -> Option<u64> {
            let rest = status?.split(key).nth(1)?;
            let number: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            number.parse().ok()
        };
        Stats {
            execs: stat("stat::number_of_executed_units"),
            execs_per_second: stat("stat::average_exec_per_sec"),
            coverage: after(" cov: "),
            features: after(" ft: "),
            corpus: after(" corp: "),
            new_units: stat("stat::new_units_added"),
        }
    }
}

impl Run {
    fn summary(&self) -> String {
        let n = |v: Option<u64>| v.map_or_else(|| "?".into(), |v| v.to_string());
        let s = &self.stats;
        let verdict = match &self.finding {
            None => "found nothing".to_string(),
            Some(f) => format!("FOUND A PROBLEM ({})", f.status),
        };
        format!(
            "`{}`: {} runs in {:.0?} ({}/s), coverage {} edges / {} features, corpus {} inputs \
             ({} new): {verdict}",
            self.target,
            n(s.execs),
            self.elapsed,
            n(s.execs_per_second),
            n(s.coverage),
            n(s.features),
            n(s.corpus),
            n(s.new_units),
        )
    }
}

impl Finding {
    fn report(&self, fuzz_dir: &Path, run: &Run) -> String {
        let target = &run.target;
        let mut out = format!("--- `{target}` failed ({}):\n", self.status);
        out.push_str(&self.excerpt.join("\n"));
        out.push('\n');
        match &self.artifact {
            Some(path) => out.push_str(&format!(
                "--- the input is {}\n--- reproduce: cd {} && cargo +nightly fuzz run {target} {}\n",
                path.display(),
                fuzz_dir.display(),
                path.display()
            )),
            None => out.push_str("--- no input was saved (did the target build?)\n"),
        }
        out.push_str(&format!(
            "--- libFuzzer's whole output: {}",
            run.log.display()
        ));
        out
    }
}
