//! wrk as a bounded load generator for the benches, paced or flat out. wrk 4 has no rate option,
//! so a Lua `delay()` hook makes each keep-alive connection pause a fixed time after each answer
//! before its next request (the paced script; the max-rate script has no `delay()`), and a
//! `done()` hook prints the totals and latency percentiles on one parseable line.

use anyhow::{Context, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Each paced connection pauses this long after each answer (wrk's timers have 1 ms
/// resolution)...
pub const PERIOD_MS: u64 = 10;

/// ... unless that takes fewer connections than this: then the pause grows instead, so that
/// the number of connections can be tuned in steps of at most a tenth.
pub const MIN_PACED_CONNECTIONS: usize = 10;

/// Marker of the line printed by the `done()` hook.
const RESULT_MARKER: &str = "shadowtap-wrk";

/// A paced load: `connections` connections, each pausing `period_ms` after an answer, for
/// `seconds`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    pub connections: usize,
    pub period_ms: u64,
    pub seconds: u64,
}

impl Pace {
    /// The pace that would offer `requests_per_second` if answers took no time: a pause of
    /// [`PERIOD_MS`], longer at low rates to keep [`MIN_PACED_CONNECTIONS`] connections.
    pub fn new(requests_per_second: f64, seconds: u64) -> Self {
        let rps = requests_per_second.max(1e-3);
        let min = MIN_PACED_CONNECTIONS as f64;
        let period_ms = if rps * PERIOD_MS as f64 / 1000.0 >= min {
            PERIOD_MS
        } else {
            ((1000.0 * min / rps).round() as u64).max(1)
        };
        let connections = (rps * period_ms as f64 / 1000.0).round() as usize;
        Pace {
            connections: connections.max(1),
            period_ms,
            seconds,
        }
    }
}

/// How wrk offers its load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Offer {
    /// Paced: each connection pauses after each answer.
    Paced(Pace),
    /// As fast as the server answers, on `connections` keep-alive connections.
    Max { connections: usize, seconds: u64 },
}

impl Offer {
    fn connections(&self) -> usize {
        match *self {
            Offer::Paced(p) => p.connections,
            Offer::Max { connections, .. } => connections,
        }
    }

    fn seconds(&self) -> u64 {
        match *self {
            Offer::Paced(p) => p.seconds,
            Offer::Max { seconds, .. } => seconds,
        }
    }
}

/// The two Lua scripts for one request body: paced and flat out.
#[derive(Clone, Debug)]
pub struct Scripts {
    pub paced: PathBuf,
    pub max: PathBuf,
}

impl Scripts {
    fn for_offer(&self, offer: Offer) -> &Path {
        match offer {
            Offer::Paced(_) => &self.paced,
            Offer::Max { .. } => &self.max,
        }
    }
}

/// What one wrk run reported.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WrkResult {
    /// Completed requests (responses received, any status).
    pub requests: u64,
    pub duration: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p99_9: Duration,
    pub max: Duration,
    /// Responses with a status outside 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
}

impl WrkResult {
    /// Completed requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Writes the Lua scripts that POST `body` (JSON) to the URL wrk is given, named after `name`
/// in `dir`.
pub fn write_scripts(dir: &Path, name: &str, body: &str) -> anyhow::Result<Scripts> {
    let write = |paced: bool| -> anyhow::Result<PathBuf> {
        let file = dir.join(format!(
            "wrk-{name}-{}.lua",
            if paced { "paced" } else { "max" }
        ));
        std::fs::write(&file, script(body, paced))
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(file)
    };
    Ok(Scripts {
        paced: write(true)?,
        max: write(false)?,
    })
}

/// The script's text. wrk decides once, before `init`, whether a script paces (has `delay()`),
/// so the paced and the max-rate scripts are two files.
fn script(body: &str, paced: bool) -> String {
    let delay = if paced {
        format!(
            r#"
local period = {PERIOD_MS}

function init(args)
  period = tonumber(args[1]) or period
end

function delay()
  return period
end
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"-- POSTs for `cargo xtask bench` (written by xtask; safe to delete).
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{delay}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{RESULT_MARKER} requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d p99_9_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
"#
    )
}

/// Runs wrk with the script of `scripts` that fits `offer` against `url`, one thread; killed if
/// it outlives its duration by 30 s.
pub fn run(scripts: &Scripts, url: &str, offer: Offer) -> anyhow::Result<WrkResult> {
    let seconds = offer.seconds();
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c", &offer.connections().to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "5s", "-s"])
        .arg(scripts.for_offer(offer))
        .arg(url);
    if let Offer::Paced(pace) = offer {
        // The script's init() reads the pause from here.
        cmd.args(["--", &pace.period_ms.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start wrk (apt-get install wrk)")?;
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wrk did not finish within {} s", seconds + 30);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .context("no stdout")?
        .read_to_string(&mut out)?;
    child
        .stderr
        .take()
        .context("no stderr")?
        .read_to_string(&mut err)?;
    if !status.success() {
        bail!("wrk failed ({status}): {err}{out}");
    }
    parse(&out).with_context(|| format!("no `{RESULT_MARKER}` line in wrk's output:\n{out}{err}"))
}

/// Parses the line printed by the script's `done()` hook.
fn parse(stdout: &str) -> Option<WrkResult> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(RESULT_MARKER))?;
    let field = |key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    let us = |key: &str| field(key).map(Duration::from_micros);
    Some(WrkResult {
        requests: field("requests")?,
        duration: us("duration_us")?,
        p50: us("p50_us")?,
        p90: us("p90_us")?,
        p99: us("p99_us")?,
        p99_9: us("p99_9_us")?,
        max: us("max_us")?,
        non_2xx: field("non2xx")?,
        socket_errors: field("connect")? + field("read")? + field("write")? + field("timeout")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 5s test @ http://127.0.0.1:4000
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   301.12us  120.50us   4.10ms   91.00%
  4950 requests in 5.00s, 2.10MB read
Requests/sec:    989.95
Transfer/sec:    430.00KB
shadowtap-wrk requests=4950 duration_us=5000250 p50_us=280 p90_us=410 p99_us=900 p99_9_us=2500 max_us=4100 non2xx=2 connect=0 read=1 write=0 timeout=3
";

    #[test]
    fn done_line_is_parsed() {
        let r = parse(OUTPUT).unwrap();
        assert_eq!(r.requests, 4950);
        assert_eq!(r.duration, Duration::from_micros(5_000_250));
        assert_eq!(r.p50, Duration::from_micros(280));
        assert_eq!(r.p90, Duration::from_micros(410));
        assert_eq!(r.p99, Duration::from_micros(900));
        assert_eq!(r.p99_9, Duration::from_micros(2500));
        assert_eq!(r.max, Duration::from_micros(4100));
        assert_eq!((r.non_2xx, r.socket_errors), (2, 4));
        assert!((r.rate() - 989.95).abs() < 0.01, "{}", r.rate());
    }

    #[test]
    fn missing_or_partial_line_is_none() {
        assert_eq!(parse("Requests/sec: 10\n"), None);
        assert_eq!(parse("shadowtap-wrk requests=10 duration_us=5\n"), None);
        assert_eq!(parse("shadowtap-wrk requests=x duration_us=5\n"), None);
    }

    #[test]
    fn only_the_paced_script_has_a_delay_hook() {
        let paced = script("{\"a\":1}", true);
        let max = script("{\"a\":1}", false);
        for s in [&paced, &max] {
            assert!(s.contains("wrk.body = [==[{\"a\":1}]==]"), "{s}");
            assert!(s.contains("latency:percentile(99.9)"), "{s}");
            assert!(s.contains("p99_9_us=%d"), "{s}");
        }
        assert!(paced.contains("function delay()"), "{paced}");
        assert!(!max.contains("delay"), "{max}");
    }

    #[test]
    fn pace_keeps_ten_connections_and_a_10_ms_pause_where_it_can() {
        let pace = |rps| {
            let p = Pace::new(rps, 5);
            (p.connections, p.period_ms)
        };
        assert_eq!(pace(10_000.0), (100, 10));
        assert_eq!(pace(2000.0), (20, 10));
        assert_eq!(pace(1000.0), (10, 10));
        // Fewer than 10 connections at 10 ms: the pause grows instead.
        assert_eq!(pace(500.0), (10, 20));
        assert_eq!(pace(200.0), (10, 50));
        assert_eq!(pace(10.0), (10, 1000));
    }
}
