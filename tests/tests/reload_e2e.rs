//! SIGHUP reloads `shadowd run`'s config file in place: a changed sample rate changes what is
//! mirrored from the next request on, with every counter carrying on (no reset, no re-attach);
//! a broken file, or a change only a restart can apply (the ports), is refused and the running
//! configuration stays (`shadowtap_config_reload_total{result}`, a log line saying why).
//!
//! Needs root; skipped (with a message) otherwise.

use nix::sys::signal::Signal;
use shadow_core::vocabulary::SkipReason;
use shadowtap_tests::admin::{self, accounted, metric, skipped, sum_of};
use shadowtap_tests::model::{ModelServer, Req, Role};
use shadowtap_tests::netns::NetNs;
use shadowtap_tests::require_root;
use shadowtap_tests::shadowd::Daemon;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

const PROD: SocketAddr = local(8080);
const SHADOW: SocketAddr = local(8081);
const ADMIN: SocketAddr = local(9464);

const fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// The config file: production on `port`, everything mirrored at `sample_percent`.
fn config_text(port: u16, sample_percent: &str) -> String {
    format!(
        "[capture]\ninterface = \"lo\"\nports = [{port}]\n\
         [shadow]\nurl = \"http://{SHADOW}\"\n\
         [admin]\naddr = \"{ADMIN}\"\n\
         [compare]\npreset = \"kserve-v2\"\n\
         [mirror]\nsample_percent = {sample_percent}\n"
    )
}

/// Replaces the file at once (written aside, renamed over it).
fn write_config(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

struct Setup {
    ns: NetNs,
    daemon: Daemon,
    sent: u64,
}

impl Setup {
    /// Sends `n` requests to production and waits until the mirror accounted for all sent.
    fn send(&mut self, n: u64) -> String {
        let reqs: Vec<Req> = (self.sent..self.sent + n).map(Req::post).collect();
        let stream = self.ns.run(|| TcpStream::connect(PROD)).unwrap();
        assert_eq!(
            shadowtap_tests::model::send(stream, &reqs, false).unwrap(),
            n as usize
        );
        self.sent += n;
        let total = self.sent as f64;
        admin::wait_metrics(
            &self.ns,
            &mut self.daemon,
            ADMIN,
            "requests accounted",
            |t| accounted(t) >= total,
        )
    }

    /// SIGHUP, then waits until the reload with `result` has been counted `count` times.
    fn hangup(&mut self, result: &str, count: f64) -> String {
        self.daemon.signal(Signal::SIGHUP).unwrap();
        let series = format!("shadowtap_config_reload_total{{result=\"{result}\"}}");
        admin::wait_metrics(&self.ns, &mut self.daemon, ADMIN, &series.clone(), |t| {
            metric(t, &series) >= count
        })
    }
}

fn mirrored(text: &str) -> f64 {
    sum_of(text, "shadowtap_mirrored_requests_total")
}

#[test]
fn sighup_changes_the_sample_rate_in_place_and_refuses_what_needs_a_restart() {
    if !require_root("reload_e2e") {
        return;
    }
    let ns = NetNs::new("reload").expect("netns");
    let _prod = ModelServer::start(
        ns.run(|| TcpListener::bind(PROD)).unwrap(),
        Role::Production,
    )
    .unwrap();
    let shadow =
        ModelServer::start(ns.run(|| TcpListener::bind(SHADOW)).unwrap(), Role::Shadow).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shadowtap.toml");
    write_config(&config, &config_text(PROD.port(), "100.0"));
    let mut daemon =
        Daemon::spawn(Some(&ns), &["run", "--config", config.to_str().unwrap()]).unwrap();
    admin::wait_healthy(&ns, &mut daemon, ADMIN);
    let mut s = Setup {
        ns,
        daemon,
        sent: 0,
    };

    // 100 %: every request mirrored.
    let text = s.send(20);
    assert_eq!(mirrored(&text), 20.0, "{text}");
    assert_eq!(
        metric(&text, "shadowtap_config_reload_total{result=\"ok\"}"),
        0.0
    );

    // 0 % from the reload on; the 20 mirrored before are still counted.
    write_config(&config, &config_text(PROD.port(), "0.0"));
    s.hangup("ok", 1.0);
    let text = s.send(20);
    assert_eq!(
        mirrored(&text),
        20.0,
        "no more mirrored, none forgotten:\n{text}"
    );
    assert_eq!(skipped(&text, SkipReason::SampledOut), 20.0, "{text}");
    assert_eq!(sum_of(&text, "shadowtap_exchanges_total"), 40.0, "{text}");

    // A broken file is refused: the 0 % stays.
    write_config(&config, "[mirror]\nsample_percent = 250.0\n[capture\n");
    let text = s.hangup("rejected", 1.0);
    assert_eq!(
        metric(&text, "shadowtap_config_reload_total{result=\"ok\"}"),
        1.0
    );
    let text = s.send(10);
    assert_eq!(mirrored(&text), 20.0, "{text}");
    assert_eq!(skipped(&text, SkipReason::SampledOut), 30.0, "{text}");

    // Other ports would need a new attach: refused, naming the key and the restart.
    write_config(&config, &config_text(8082, "100.0"));
    s.hangup("rejected", 2.0);
    let output = s.daemon.output();
    assert!(
        output.contains("capture.ports cannot change while shadowd runs")
            && output.contains("systemctl restart shadowtap"),
        "{output}"
    );
    let text = s.send(10);
    assert_eq!(
        mirrored(&text),
        20.0,
        "the refused file changed nothing:\n{text}"
    );

    // Back to 100 %: mirrored again, counting on from 20.
    write_config(&config, &config_text(PROD.port(), "100.0"));
    s.hangup("ok", 2.0);
    let text = s.send(10);
    assert_eq!(mirrored(&text), 30.0, "{text}");
    assert_eq!(skipped(&text, SkipReason::SampledOut), 40.0, "{text}");
    assert_eq!(
        shadow.seen().len(),
        30,
        "the shadow got exactly the mirrored ones"
    );

    let output = s.daemon.output();
    assert_eq!(
        output.matches("eBPF tap attached").count(),
        1,
        "a reload never re-attaches:\n{output}"
    );
    assert!(output.contains("configuration reload refused"), "{output}");
    let status = s.daemon.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}:\n{}", s.daemon.output());
}
