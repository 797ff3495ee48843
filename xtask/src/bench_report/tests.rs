use super::*;
use crate::bench_plan::{Rate, plan};
use crate::bench_run::{Daemon, Idle, KernelTime};
use crate::bench_tcpdump::TcpdumpCounts;
use crate::bench_wrk::WrkResult;

/// A wrk result of `rps` over one second with p99 `p99_us`.
fn wrk(rps: u64, p99_us: u64) -> WrkResult {
    WrkResult {
        requests: rps,
        duration: Duration::from_secs(1),
        p50: Duration::from_micros(p99_us / 4),
        p99: Duration::from_micros(p99_us),
        p99_9: Duration::from_micros(p99_us * 2),
        ..WrkResult::default()
    }
}

fn baseline(rps: u64, p99_us: u64) -> Result<Measured, String> {
    Ok(Measured {
        wrk: Some(wrk(rps, p99_us)),
        ..Measured::default()
    })
}

fn tapped(rps: u64, p99_us: u64, mirrored: f64, cpu_ms: u64) -> Result<Measured, String> {
    Ok(Measured {
        wrk: Some(wrk(rps, p99_us)),
        daemon: Some(Daemon {
            mirrored: [("ok".to_string(), mirrored)].into(),
            dropped: [("capture".to_string(), 0.0)].into(),
            skipped: [("queue_full".to_string(), rps as f64 - mirrored)].into(),
            cpu: Duration::from_millis(cpu_ms),
            window: Duration::from_secs(2),
            settled: true,
            ..Daemon::default()
        }),
        ..Measured::default()
    })
}

fn job(load: Load, variant: Variant) -> Job {
    Job::Load { load, variant }
}

/// Full-mode results with three repetitions of small JSON at 10k req/s (baseline, shadowtap,
/// kernel stats), tcpdump and shadowtap at max rate, and idle flows.
fn results() -> Results {
    let small10k = Load::small(Rate::Fixed(10_000));
    let small_max = Load::small(Rate::Max);
    let mut runs = BTreeMap::new();
    runs.insert(
        job(small10k, Variant::Baseline),
        vec![
            baseline(100, 1000),
            baseline(200, 1000),
            baseline(100, 2000),
        ],
    );
    runs.insert(
        job(small10k, Variant::SHADOWTAP),
        vec![
            tapped(90, 1100, 90.0, 1),
            tapped(100, 1000, 100.0, 1),
            tapped(95, 2000, 95.0, 1),
        ],
    );
    runs.insert(
        job(
            small10k,
            Variant::Shadowtap {
                shadow: ShadowState::Healthy,
                kernel_stats: true,
            },
        ),
        vec![Ok(Measured {
            wrk: Some(wrk(1000, 100)),
            daemon: Some(Daemon {
                kernel: Some(KernelTime {
                    run_time_ns: 500_000,
                    run_cnt: 2_000,
                }),
                ..Daemon::default()
            }),
            ..Measured::default()
        })],
    );
    runs.insert(
        job(small_max, Variant::SHADOWTAP),
        vec![Ok(Measured {
            wrk: Some(wrk(30_000, 500)),
            daemon: Some(Daemon {
                mirrored: [("ok".to_string(), 15_000.0)].into(),
                dropped: [
                    ("capture".to_string(), 12.0),
                    ("reassembly".to_string(), 3.0),
                ]
                .into(),
                ..Daemon::default()
            }),
            ..Measured::default()
        })],
    );
    runs.insert(
        job(small_max, Variant::Tcpdump),
        vec![Ok(Measured {
            wrk: Some(wrk(30_000, 500)),
            tcpdump: Some(TcpdumpCounts {
                captured: 100,
                received: 200,
                dropped_by_kernel: 100,
            }),
            ..Measured::default()
        })],
    );
    runs.insert(
        Job::IdleFlows {
            connections: 10_000,
        },
        vec![
            Ok(Measured {
                idle: Some(Idle {
                    connections: 10_000,
                    with: crate::bench_proc::Memory {
                        rss_bytes: 48 << 20,
                        peak_rss_bytes: 50 << 20,
                    },
                    flows_active: Some(10_000.0),
                    ..Idle::default()
                }),
                ..Measured::default()
            }),
            Err("shadowd did not start".into()),
        ],
    );
    Results {
        plan: plan(&[], false),
        machine: Machine {
            date: "2026-11-30T12:00:00Z".into(),
            cores: 2,
            cpu_model: "Test CPU".into(),
            kernel: "6.18.0".into(),
            load_average: "1.00 / 0.50 / 0.25".into(),
        },
        runs,
        paces: [(
            small10k,
            crate::bench_wrk::Pace {
                connections: 120,
                period_ms: 10,
                seconds: 5,
            },
        )]
        .into(),
        parse: None,
        elapsed: Duration::from_secs(60),
    }
}

#[test]
fn ratios_are_taken_per_repetition_and_summarised() {
    let v = results().to_json();
    let overhead = v["scenarios"]["overhead"].as_array().unwrap();
    let tap = overhead
        .iter()
        .find(|j| j["job"] == "small@10000/shadowtap")
        .unwrap();
    let t = &tap["ratios_vs_baseline"]["throughput"];
    // 90/100, 100/200, 95/100.
    assert_eq!(t["per_rep"], json!([0.9, 0.5, 0.95]));
    assert_eq!(
        (t["min"].clone(), t["median"].clone(), t["max"].clone()),
        (json!(0.5), json!(0.9), json!(0.95))
    );
    let p99 = &tap["ratios_vs_baseline"]["p99"];
    assert_eq!(p99["per_rep"], json!([1.1, 1.0, 1.0]));
    assert_eq!(tap["mirrored_over_served"]["median"], json!(1.0));
    // Raw values are there too, and the baseline has no ratios.
    let base = overhead
        .iter()
        .find(|j| j["job"] == "small@10000/baseline")
        .unwrap();
    assert_eq!(
        base["throughput_rps"]["per_rep"],
        json!([100.0, 200.0, 100.0])
    );
    assert!(base.get("ratios_vs_baseline").is_none());
    assert_eq!(v["mode"], "full");
    assert_eq!(v["machine"]["cores"], 2);
    assert_eq!(v["failed_runs"], 1);
    assert_eq!(
        v["config"]["paces"]["small@10000"],
        json!({"connections": 120, "pause_ms": 10})
    );
}

#[test]
fn drops_and_skips_are_reported_by_label() {
    let v = results().to_json();
    let fidelity = v["scenarios"]["fidelity"].as_array().unwrap();
    let tap = fidelity
        .iter()
        .find(|j| j["job"] == "small@max/shadowtap")
        .unwrap();
    assert_eq!(tap["dropped_by_stage"]["capture"]["median"], json!(12.0));
    assert_eq!(tap["dropped_by_stage"]["reassembly"]["median"], json!(3.0));
    assert_eq!(tap["capture_dropped"]["median"], json!(15.0));
    let dump = fidelity
        .iter()
        .find(|j| j["job"] == "small@max/tcpdump")
        .unwrap();
    assert_eq!(dump["tcpdump_dropped_by_kernel"]["median"], json!(100.0));
    let md = results().to_markdown();
    assert!(md.contains("capture 12, reassembly 3"), "{md}");
    assert!(md.contains("| 100 of 200 |"), "{md}");
}

#[test]
fn targets_are_judged_on_medians_and_unmeasured_ones_say_so() {
    let targets = results().targets();
    assert_eq!(targets.len(), 9);
    let by = |m: &str| targets.iter().find(|t| t.measure.starts_with(m)).unwrap();
    // 1 ms CPU over 90..100 mirrored: ~10-11 µs each, median 10.5 → missed.
    let cpu = by("daemon CPU per mirrored request");
    assert_eq!(cpu.met, Some(false), "{cpu:?}");
    assert!(cpu.measured.contains("µs"), "{cpu:?}");
    assert_eq!(by("mirrored / served at 10k").met, Some(true));
    // p99 ratios 1.1, 1.0, 1.0 → median 1.0.
    assert_eq!(by("production p99 tapped").met, Some(true));
    // 15 dropped vs tcpdump's 100.
    assert_eq!(by("capture drops").measured, "15; tcpdump: 100 packets");
    let drops = by("capture drops");
    assert_eq!(drops.met, Some(true), "{drops:?}");
    assert_eq!(by("RSS with 10k idle flows").met, Some(true));
    let kernel = by("tap cost in the kernel");
    assert_eq!(kernel.measured, "250 ns per packet");
    assert_eq!(kernel.met, Some(true));
    let slow = by("production throughput at max rate, shadow slow");
    assert_eq!((slow.met, slow.measured.as_str()), (None, "not measured"));
    let md = results().to_markdown();
    assert!(
        md.contains("| measure | target | measured | met? |"),
        "{md}"
    );
    assert!(md.contains("| not measured | — |"), "{md}");
    assert!(md.contains("**no**"), "{md}");
    assert!(md.contains("### Failed runs"), "{md}");
}

#[test]
fn markdown_cells_show_median_and_range() {
    assert_eq!(
        cell(&[Some(0.9), Some(0.5), Some(0.95)], f2),
        "0.90 (0.50–0.95)"
    );
    assert_eq!(cell(&[Some(1.0), Some(1.0)], f2), "1.00");
    assert_eq!(cell(&[Some(2.0)], f2), "2.00");
    assert_eq!(cell(&[None], f2), "—");
    assert_eq!(count(1_234_567.0), "1,234,567");
    assert_eq!(count(999.0), "999");
    assert_eq!(
        ms_cell(&[Some(1_500.0), Some(1_000.0), Some(2_000.0)]),
        "1.50 (1.00–2.00) ms"
    );
    assert_eq!(ms_cell(&[Some(1_000_000.0)]), "1000 ms");
    assert_eq!(ms_cell(&[]), "—");
}

#[test]
fn the_readme_section_is_replaced_between_the_markers_only() {
    let readme = format!("# x\n\n## Performance\n\n{README_START}\nold\n{README_END}\n\n## Next\n");
    let once = replace_readme_section(&readme, "new table\n").unwrap();
    assert_eq!(
        once,
        format!("# x\n\n## Performance\n\n{README_START}\n\nnew table\n{README_END}\n\n## Next\n")
    );
    // Idempotent.
    assert_eq!(replace_readme_section(&once, "new table\n").unwrap(), once);
    assert_eq!(replace_readme_section("# x\n", "t"), None);
    let reversed = format!("{README_END}\n{README_START}\n");
    assert_eq!(replace_readme_section(&reversed, "t"), None);
}

#[test]
fn the_results_file_check_accepts_a_full_file_and_rejects_an_empty_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let mut r = results();
    r.plan = plan(
        &[Scenario::Overhead, Scenario::Fidelity, Scenario::Cost],
        false,
    );
    std::fs::write(&path, r.to_json().to_string()).unwrap();
    crate::bench::check_results_file(&path).unwrap();
    // Isolation planned but nothing of it ran: the check fails, naming it.
    r.plan = plan(&[Scenario::Isolation, Scenario::Overhead], false);
    std::fs::write(&path, r.to_json().to_string()).unwrap();
    let err = crate::bench::check_results_file(&path).unwrap_err();
    assert!(err.to_string().contains("isolation"), "{err}");
    std::fs::write(&path, "{").unwrap();
    assert!(crate::bench::check_results_file(&path).is_err());
}

#[test]
fn mirrored_over_served_uses_productions_own_count_when_known() {
    let mut m = tapped(190, 1000, 200.0, 1).unwrap();
    // wrk completed 190; 10 more were in flight when it stopped and the mirror saw them.
    assert!((mirrored_over_served(&m).unwrap() - 200.0 / 190.0).abs() < 1e-12);
    m.production_answered = Some(200);
    assert_eq!(mirrored_over_served(&m), Some(1.0));
    assert_eq!(served(&m), Some(190.0));
    assert_eq!(answered(&m), Some(200.0));
}
