//! What `cargo xtask bench` runs: the scenarios, the loads and variants each one needs, and the
//! union of those as one ordered list of jobs that every repetition runs in turn (so the
//! variants of one load run side by side, A B C A B C …, and noise hits them alike). A job
//! two scenarios need (the same load and variant) runs once per repetition and serves both.

use clap::ValueEnum;
use std::collections::BTreeSet;

/// The scenarios of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Scenario {
    /// What each variant costs production: throughput and latency ratios vs production alone,
    /// small JSON and 1 MiB bodies, at fixed rates and at max rate.
    Overhead,
    /// Production while the shadow is slow (1 s per request) or down, tapped vs nginx mirror.
    Isolation,
    /// Mirrored / served, drops by stage and skips by reason, beside tcpdump's kernel drops.
    Fidelity,
    /// Daemon CPU per mirrored request, memory, memory with idle flows, the tap's kernel time.
    Cost,
    /// Offline pcap → exchanges on one core (the criterion bench of shadow-core).
    Parse,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Overhead,
        Scenario::Isolation,
        Scenario::Fidelity,
        Scenario::Cost,
        Scenario::Parse,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Scenario::Overhead => "overhead",
            Scenario::Isolation => "isolation",
            Scenario::Fidelity => "fidelity",
            Scenario::Cost => "cost",
            Scenario::Parse => "parse",
        }
    }
}

/// The request body production is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Body {
    /// One wine, 11 FP64 features (an Open Inference Protocol request, ~130 bytes).
    Small,
    /// 1 MiB: the same request with a 1 MiB string in its free-form `parameters`.
    Large,
}

impl Body {
    pub fn key(self) -> &'static str {
        match self {
            Body::Small => "small",
            Body::Large => "1MiB",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Body::Small => "small JSON",
            Body::Large => "1 MiB JSON",
        }
    }
}

/// The offered rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rate {
    /// Paced, requests per second.
    Fixed(u32),
    /// As fast as production answers ([`MAX_RATE_CONNECTIONS`] connections, no pause).
    Max,
}

/// Connections wrk keeps busy at max rate.
pub const MAX_RATE_CONNECTIONS: usize = 16;

/// A body at a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Load {
    pub body: Body,
    pub rate: Rate,
}

impl Load {
    pub const fn small(rate: Rate) -> Load {
        Load {
            body: Body::Small,
            rate,
        }
    }

    pub const fn large(rate: Rate) -> Load {
        Load {
            body: Body::Large,
            rate,
        }
    }

    /// `small@10000`, `1MiB@max`.
    pub fn key(self) -> String {
        match self.rate {
            Rate::Fixed(r) => format!("{}@{r}", self.body.key()),
            Rate::Max => format!("{}@max", self.body.key()),
        }
    }

    /// `small JSON, 10k req/s`, `1 MiB JSON, max rate`.
    pub fn label(self) -> String {
        match self.rate {
            Rate::Fixed(r) if r >= 1000 && r % 1000 == 0 => {
                format!("{}, {}k req/s", self.body.label(), r / 1000)
            }
            Rate::Fixed(r) => format!("{}, {r} req/s", self.body.label()),
            Rate::Max => format!("{}, max rate", self.body.label()),
        }
    }
}

/// The shadow the mirror sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShadowState {
    /// demo-model v2, answering at once.
    Healthy,
    /// demo-model v2 with `--delay-ms 1000`.
    Slow,
    /// A loopback port nobody listens on.
    Down,
}

impl ShadowState {
    pub fn key(self) -> &'static str {
        match self {
            ShadowState::Healthy => "healthy",
            ShadowState::Slow => "slow",
            ShadowState::Down => "down",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ShadowState::Healthy => "shadow healthy",
            ShadowState::Slow => "shadow slow (1 s)",
            ShadowState::Down => "shadow down",
        }
    }
}

/// How production is run while wrk loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// Production alone.
    Baseline,
    /// `shadowd run` tapping production, mirroring to the shadow; with `kernel_stats`,
    /// `kernel.bpf_stats_enabled=1` for the run (the tap's run time is read).
    Shadowtap {
        shadow: ShadowState,
        kernel_stats: bool,
    },
    /// nginx in front of production with `mirror` to the shadow (wrk targets nginx).
    NginxMirror { shadow: ShadowState },
    /// tcpdump capturing production's port to a file.
    Tcpdump,
}

impl Variant {
    pub const SHADOWTAP: Variant = Variant::Shadowtap {
        shadow: ShadowState::Healthy,
        kernel_stats: false,
    };
    pub const NGINX: Variant = Variant::NginxMirror {
        shadow: ShadowState::Healthy,
    };

    /// `baseline`, `shadowtap`, `shadowtap/shadow-slow`, `shadowtap/kernel-stats`,
    /// `nginx-mirror/shadow-down`, `tcpdump`.
    pub fn key(self) -> String {
        match self {
            Variant::Baseline => "baseline".into(),
            Variant::Shadowtap {
                shadow,
                kernel_stats,
            } => {
                let mut k = String::from("shadowtap");
                if shadow != ShadowState::Healthy {
                    k += &format!("/shadow-{}", shadow.key());
                }
                if kernel_stats {
                    k += "/kernel-stats";
                }
                k
            }
            Variant::NginxMirror { shadow } => match shadow {
                ShadowState::Healthy => "nginx-mirror".into(),
                s => format!("nginx-mirror/shadow-{}", s.key()),
            },
            Variant::Tcpdump => "tcpdump".into(),
        }
    }

    /// The variant's name without its shadow: `shadowtap`, `nginx mirror`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Shadowtap { .. } => "shadowtap",
            Variant::NginxMirror { .. } => "nginx mirror",
            Variant::Tcpdump => "tcpdump",
        }
    }
}

/// One thing a repetition runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    /// wrk offers `load` to production run as `variant`.
    Load { load: Load, variant: Variant },
    /// `connections` idle keep-alive connections to production through the tap; the daemon's
    /// memory is measured.
    IdleFlows { connections: usize },
}

impl Job {
    pub fn key(self) -> String {
        match self {
            Job::Load { load, variant } => format!("{}/{}", load.key(), variant.key()),
            Job::IdleFlows { connections } => format!("idle-flows@{connections}/shadowtap"),
        }
    }

    pub fn label(self) -> String {
        match self {
            Job::Load { load, variant } => {
                let shadow = match variant {
                    Variant::Shadowtap { shadow, .. } | Variant::NginxMirror { shadow }
                        if shadow != ShadowState::Healthy =>
                    {
                        format!(", {}", shadow.label())
                    }
                    _ => String::new(),
                };
                let stats = match variant {
                    Variant::Shadowtap {
                        kernel_stats: true, ..
                    } => ", BPF stats on",
                    _ => "",
                };
                format!("{}: {}{shadow}{stats}", load.label(), variant.name())
            }
            Job::IdleFlows { connections } => {
                format!("{connections} idle keep-alive flows: shadowtap")
            }
        }
    }
}

/// Everything one invocation runs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub scenarios: Vec<Scenario>,
    /// Repetitions of every job.
    pub reps: usize,
    /// Seconds wrk runs per job.
    pub seconds: u64,
    /// Jobs in the order each repetition runs them.
    pub jobs: Vec<Job>,
}

/// The loads each scenario uses.
pub struct Loads {
    pub overhead: Vec<Load>,
    /// Isolation: max rate and one fixed rate.
    pub isolation: Vec<Load>,
    pub fidelity: Vec<Load>,
    pub cost: Vec<Load>,
    /// The load at which the tap's kernel time is read.
    pub kernel_stats: Load,
    pub idle_connections: usize,
}

impl Loads {
    pub fn new(quick: bool) -> Loads {
        use Rate::{Fixed, Max};
        if quick {
            Loads {
                overhead: vec![
                    Load::small(Fixed(10_000)),
                    Load::small(Max),
                    Load::large(Max),
                ],
                isolation: vec![Load::small(Max)],
                fidelity: vec![Load::small(Fixed(10_000)), Load::small(Max)],
                cost: vec![Load::small(Fixed(10_000))],
                kernel_stats: Load::small(Fixed(10_000)),
                idle_connections: 1_000,
            }
        } else {
            Loads {
                overhead: vec![
                    Load::small(Fixed(1_000)),
                    Load::small(Fixed(5_000)),
                    Load::small(Fixed(10_000)),
                    Load::small(Max),
                    Load::large(Fixed(LARGE_FIXED_RATE)),
                    Load::large(Max),
                ],
                isolation: vec![Load::small(Max), Load::small(Fixed(5_000))],
                fidelity: vec![Load::small(Fixed(10_000)), Load::small(Max)],
                cost: vec![
                    Load::small(Fixed(1_000)),
                    Load::small(Fixed(5_000)),
                    Load::small(Fixed(10_000)),
                    Load::small(Max),
                ],
                kernel_stats: Load::small(Fixed(10_000)),
                idle_connections: 10_000,
            }
        }
    }
}

/// The fixed rate for 1 MiB bodies: production alone answers ~600/s of them flat out on the
/// 2-core reference machine, so 200/s (~210 MB/s) leaves it headroom.
pub const LARGE_FIXED_RATE: u32 = 200;

/// The jobs `scenario` needs.
pub fn jobs_of(scenario: Scenario, loads: &Loads) -> Vec<Job> {
    let job = |load, variant| Job::Load { load, variant };
    let mut jobs = Vec::new();
    match scenario {
        Scenario::Overhead => {
            for &load in &loads.overhead {
                for variant in [Variant::Baseline, Variant::SHADOWTAP, Variant::NGINX] {
                    jobs.push(job(load, variant));
                }
            }
        }
        Scenario::Isolation => {
            for &load in &loads.isolation {
                jobs.push(job(load, Variant::Baseline));
                for shadow in [ShadowState::Slow, ShadowState::Down] {
                    jobs.push(job(
                        load,
                        Variant::Shadowtap {
                            shadow,
                            kernel_stats: false,
                        },
                    ));
                    jobs.push(job(load, Variant::NginxMirror { shadow }));
                }
            }
        }
        Scenario::Fidelity => {
            for &load in &loads.fidelity {
                for variant in [
                    Variant::Baseline,
                    Variant::SHADOWTAP,
                    Variant::NGINX,
                    Variant::Tcpdump,
                ] {
                    jobs.push(job(load, variant));
                }
            }
        }
        Scenario::Cost => {
            for &load in &loads.cost {
                jobs.push(job(load, Variant::SHADOWTAP));
            }
            jobs.push(job(
                loads.kernel_stats,
                Variant::Shadowtap {
                    shadow: ShadowState::Healthy,
                    kernel_stats: true,
                },
            ));
            jobs.push(Job::IdleFlows {
                connections: loads.idle_connections,
            });
        }
        Scenario::Parse => {}
    }
    jobs
}

/// The plan for `scenarios` (all of them when empty).
pub fn plan(scenarios: &[Scenario], quick: bool) -> Plan {
    let mut scenarios: Vec<Scenario> = if scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        scenarios.to_vec()
    };
    scenarios.sort();
    scenarios.dedup();
    let loads = Loads::new(quick);
    // Ordered by load, then variant (baseline first), idle flows last.
    let jobs: BTreeSet<Job> = scenarios.iter().flat_map(|&s| jobs_of(s, &loads)).collect();
    Plan {
        quick,
        scenarios,
        reps: if quick { 1 } else { 5 },
        seconds: if quick { 2 } else { 5 },
        jobs: jobs.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_jobs_run_once_and_each_load_starts_with_its_baseline() {
        let p = plan(&[], false);
        let keys: Vec<String> = p.jobs.iter().map(|j| j.key()).collect();
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        // Overhead, isolation and fidelity all need small@max/baseline: once.
        assert_eq!(
            keys.iter().filter(|k| *k == "small@max/baseline").count(),
            1
        );
        let mut seen_loads = Vec::new();
        for job in &p.jobs {
            if let Job::Load { load, variant } = job {
                if !seen_loads.contains(load) {
                    seen_loads.push(*load);
                    // Cost-only loads (none in the full plan) would lack a baseline.
                    assert_eq!(*variant, Variant::Baseline, "{}", job.key());
                }
            }
        }
        assert!(matches!(
            p.jobs.last(),
            Some(Job::IdleFlows {
                connections: 10_000
            })
        ));
        assert_eq!((p.reps, p.seconds), (5, 5));
    }

    #[test]
    fn the_full_plan_covers_every_point_of_the_issue() {
        let keys: Vec<String> = plan(&[], false).jobs.iter().map(|j| j.key()).collect();
        for k in [
            "small@1000/baseline",
            "small@5000/nginx-mirror",
            "small@10000/shadowtap",
            "small@10000/tcpdump",
            "small@10000/shadowtap/kernel-stats",
            "small@max/shadowtap/shadow-slow",
            "small@max/nginx-mirror/shadow-down",
            "small@5000/shadowtap/shadow-down",
            "small@max/tcpdump",
            "1MiB@200/shadowtap",
            "1MiB@max/nginx-mirror",
            "idle-flows@10000/shadowtap",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        assert_eq!(keys.len(), 30, "{keys:?}");
    }

    #[test]
    fn one_scenario_plans_only_its_jobs() {
        let p = plan(&[Scenario::Parse], true);
        assert!(p.jobs.is_empty());
        let p = plan(&[Scenario::Isolation, Scenario::Isolation], true);
        assert_eq!(p.scenarios, vec![Scenario::Isolation]);
        assert_eq!(p.jobs.len(), 5, "{:?}", p.jobs);
        assert_eq!((p.reps, p.seconds), (1, 2));
    }

    #[test]
    fn labels_read_well() {
        let job = Job::Load {
            load: Load::small(Rate::Fixed(10_000)),
            variant: Variant::Shadowtap {
                shadow: ShadowState::Slow,
                kernel_stats: false,
            },
        };
        assert_eq!(
            job.label(),
            "small JSON, 10k req/s: shadowtap, shadow slow (1 s)"
        );
        assert_eq!(job.key(), "small@10000/shadowtap/shadow-slow");
        assert_eq!(
            Load::large(Rate::Fixed(200)).label(),
            "1 MiB JSON, 200 req/s"
        );
    }
}
