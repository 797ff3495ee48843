//! Loopback services that xtask starts (model servers, `shadowd`): spawned with their output in
//! a log file, waited for until they answer, and stopped when their guard is dropped, also on
//! error paths.

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shadowtap_test_support::http;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Named child processes, stopped in reverse start order when dropped: SIGTERM first (so
/// `shadowd` detaches and flushes), SIGKILL after 5 s. (What they started in turn is stopped
/// with xtask's process group, `crate::process_group`, also when xtask is signalled.)
#[derive(Default)]
pub struct Processes(Vec<(&'static str, Child)>);

impl Processes {
    /// Takes ownership of `child`; it is stopped when `self` is dropped.
    pub fn push(&mut self, name: &'static str, child: Child) {
        self.0.push((name, child));
    }

    /// Fails, naming the process, if any of them has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for (name, child) in self.0.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{name} exited ({status}); see its log");
            }
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (name, child) in self.0.iter_mut().rev() {
            if let Ok(Some(_)) = child.try_wait() {
                continue;
            }
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("xtask: {name} did not stop on SIGTERM; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Spawns `cmd` with stdin closed and stdout and stderr written to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))
}

/// Waits (at most 60 s) until `GET path` answers 200, failing early if a process died.
pub fn wait_ready(addr: SocketAddr, path: &str, procs: &mut Processes) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_get(addr, path).is_ok_and(|(status, _)| status == 200) {
            return Ok(());
        }
        procs.check_running()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("http://{addr}{path} not ready after 60 s")
}

/// `GET path` over a fresh connection; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http::get(addr, path).with_context(|| format!("GET http://{addr}{path}"))
}

/// The demo's model servers, started and ready: production (v1) and shadow (v2).
pub struct DemoModels {
    pub production: SocketAddr,
    pub shadow: SocketAddr,
    /// Their gRPC addresses, when started with gRPC.
    pub grpc: Option<GrpcAddrs>,
    /// Process ids, production first (for resource accounting).
    pub pids: [u32; 2],
}

/// Where the demo's model servers serve the Open Inference Protocol's gRPC API.
#[derive(Clone, Copy, Debug)]
pub struct GrpcAddrs {
    /// Production (v1): outputs in typed `contents`.
    pub production: SocketAddr,
    /// Shadow (v2): outputs in `raw_output_contents`, so the comparison decodes both forms.
    pub shadow: SocketAddr,
}

/// Starts `demo-model` v1 (production) and v2 (shadow) from `bin` on free loopback ports (with
/// `grpc`, also their gRPC API on two more), logging to `log_dir/model-v*.log`, owned by
/// `procs`; returns once both are ready.
pub fn start_demo_models(
    bin: &std::path::Path,
    log_dir: &std::path::Path,
    procs: &mut Processes,
    grpc: bool,
) -> anyhow::Result<DemoModels> {
    use anyhow::Context as _;
    let production = free_port()?;
    let shadow = free_port()?;
    let grpc = if grpc {
        Some(GrpcAddrs {
            production: free_port()?,
            shadow: free_port()?,
        })
    } else {
        None
    };
    let mut pids = [0; 2];
    for (i, (name, model, addr)) in [
        ("production model v1", "v1", production),
        ("shadow model v2", "v2", shadow),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cmd = std::process::Command::new(bin.join("demo-model"));
        cmd.args(["--model", model, "--listen", &addr.to_string()]);
        if let Some(g) = grpc {
            let (grpc_addr, raw) = if i == 0 {
                (g.production, false)
            } else {
                (g.shadow, true)
            };
            cmd.args(["--grpc-listen", &grpc_addr.to_string()]);
            if raw {
                cmd.arg("--grpc-raw-outputs");
            }
        }
        let child = spawn_logged(&mut cmd, &log_dir.join(format!("model-{model}.log")))?;
        pids[i] = child.id();
        procs.push(name, child);
        // The server binds its gRPC address before its HTTP one: HTTP ready means both are.
        wait_ready(addr, "/v2/health/ready", procs)
            .with_context(|| format!("{name} did not start"))?;
        eprintln!("{name} (wine-quality, {model}) serving on http://{addr}");
        if let Some(g) = grpc {
            let grpc_addr = if i == 0 { g.production } else { g.shadow };
            eprintln!("{name} (wine-quality, {model}) serving gRPC on {grpc_addr}");
        }
    }
    Ok(DemoModels {
        production,
        shadow,
        grpc,
        pids,
    })
}
