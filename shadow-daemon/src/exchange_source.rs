//! The front half of the data path: capture → reassembly → http. Segments from the tap (or,
//! for `shadowd replay`, from a capture file: [`start_offline`]) become [`Exchange`]s on a
//! bounded channel that the mirror reads.
//!
//! Live, nothing here ever waits on the mirror: a full channel drops the exchange and reports
//! it ([`DropStage::ExchangeChannel`]), so a slow shadow can never slow the capture, let alone
//! production. Offline, a file can wait: nothing is dropped. Capture, reassembly and HTTP
//! counters go to [`Telemetry`], with the bytes the reassembly and HTTP stages hold
//! (`memory_bytes{stage}`) every [`HOUSEKEEPING`] tick.
//!
//! Traffic on the tapped port that is not HTTP (a TLS handshake) cannot be mirrored: its
//! exchanges are `unparsable`, and [`ForeignTraffic`] names the protocol in a rate-limited
//! warning. HTTP/2 over cleartext (the client preface, `Upgrade: h2c`) is parsed by the HTTP
//! stage and is not foreign.

use crate::capture::{CaptureStats, LiveCapture, TapSpec, open_live};
use crate::config::{CaptureConfig, Config};
use crate::service::Heartbeat;
use crate::shutdown::Shutdown;
use crate::telemetry::{Telemetry, Throttle, Warning};
use shadow_core::http::StreamLoss;
use shadow_core::http::{Exchange, ExchangeAssembler, HttpConfig, Outcome};
use shadow_core::reassembly::ReassemblyStats;
use shadow_core::segment::{Direction, FlowKey, Segment};
use shadow_core::vocabulary::{DropStage, ForeignProtocol, MemoryStage};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How often idle connections are expired and counters reported.
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// At most one warning per foreign protocol per this long (the first at once).
const FOREIGN_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Connections remembered as announcing a foreign protocol, at most.
const MAX_FOREIGN_FLOWS: usize = 1024;

/// Starts the tap described by `config.capture` and a task turning its segments into
/// exchanges; returns the channel they arrive on. The channel closes when the capture stops
/// (shutdown), after every pending exchange has been flushed. `heartbeat` beats at every
/// housekeeping round (the systemd watchdog's proof of progress).
pub fn start(
    config: &Config,
    telemetry: Arc<dyn Telemetry>,
    heartbeat: Heartbeat,
    shutdown: Shutdown,
) -> anyhow::Result<mpsc::Receiver<Exchange>> {
    let spec = TapSpec {
        interface: config.capture.interface.clone(),
        ports: config.capture.ports.iter().map(|p| p.get()).collect(),
    };
    let ring_bytes = Some(config.capture.ring_bytes);
    let capture = open_live(config.capture.kind, &spec, ring_bytes, shutdown)?;
    Ok(spawn(capture, config, telemetry, Feed::Live, heartbeat))
}

/// The same front half fed by a capture file ([`crate::capture::file`]): exchanges wait for
/// room on the channel instead of being dropped, and idle connections expire on the file's
/// clock (its latest segment timestamp), not the wall clock. The channel closes once the file
/// has been read and every pending exchange flushed.
pub fn start_offline(
    capture: LiveCapture,
    config: &Config,
    telemetry: Arc<dyn Telemetry>,
) -> mpsc::Receiver<Exchange> {
    spawn(capture, config, telemetry, Feed::Offline, Heartbeat::new())
}

/// How the front half hands exchanges on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// Never waits: a full channel drops the exchange; the wall clock expires idle flows.
    Live,
    /// Waits for room; the capture's clock expires idle flows.
    Offline,
}

fn spawn(
    capture: LiveCapture,
    config: &Config,
    telemetry: Arc<dyn Telemetry>,
    feed: Feed,
    heartbeat: Heartbeat,
) -> mpsc::Receiver<Exchange> {
    let (tx, rx) = mpsc::channel(config.capture.exchange_channel.get());
    let source = Source {
        assembler: assembler(&config.capture),
        tx,
        foreign: ForeignTraffic::new(telemetry.clone()),
        telemetry,
        ready: Vec::new(),
        reported: Reported::default(),
        feed,
        capture_clock_ns: 0,
        heartbeat,
    };
    tokio::spawn(source.run(capture));
    rx
}

/// The reassembly and HTTP stages with the configured limits.
fn assembler(capture: &CaptureConfig) -> ExchangeAssembler {
    let http = HttpConfig {
        max_body: capture.max_body_bytes,
        max_buffered: capture.max_http_buffered_bytes,
        ..HttpConfig::default()
    };
    ExchangeAssembler::new(capture.reassembly, http)
}

/// Counters already reported (the sources keep running totals; telemetry gets the deltas).
#[derive(Default)]
struct Reported {
    capture: CaptureStats,
    reassembly: ReassemblyStats,
    orphan_responses: u64,
    /// Connections whose HTTP state was dropped to stay within the memory cap.
    http_memory_evictions: u64,
    /// HTTP/2 streams lost, per reason (indexed like `StreamLoss::ALL`).
    h2_lost: [u64; StreamLoss::ALL.len()],
}

struct Source {
    assembler: ExchangeAssembler,
    tx: mpsc::Sender<Exchange>,
    telemetry: Arc<dyn Telemetry>,
    foreign: ForeignTraffic,
    ready: Vec<Exchange>,
    reported: Reported,
    feed: Feed,
    /// The latest segment timestamp seen (the clock of an offline feed).
    capture_clock_ns: u64,
    heartbeat: Heartbeat,
}

/// Recognises connections that speak another protocol than HTTP (TLS) and warns
/// (rate-limited, per protocol) when their exchanges come out unparsable.
pub struct ForeignTraffic {
    /// Connections whose request bytes announced a foreign protocol.
    flows: HashMap<FlowKey, ForeignProtocol>,
    warnings: Throttle<ForeignProtocol>,
    telemetry: Arc<dyn Telemetry>,
}

impl ForeignTraffic {
    /// Warnings go to `telemetry`.
    pub fn new(telemetry: Arc<dyn Telemetry>) -> Self {
        ForeignTraffic {
            flows: HashMap::new(),
            warnings: Throttle::new(FOREIGN_WARNING_EVERY),
            telemetry,
        }
    }

    /// Looks at a captured segment: request bytes announcing a foreign protocol mark their
    /// connection.
    pub fn segment(&mut self, segment: &Segment) {
        if segment.dir != Direction::Request || segment.payload.is_empty() {
            return;
        }
        if let Some(protocol) = ForeignProtocol::detect(&segment.payload) {
            if self.flows.len() >= MAX_FOREIGN_FLOWS {
                self.flows.clear();
            }
            self.flows.insert(segment.flow, protocol);
        }
    }

    /// Looks at an exchange leaving the HTTP stage: an unparsable one of a marked connection
    /// is warned about (the first of each protocol at once, then at most once a minute).
    pub fn exchange(&mut self, exchange: &Exchange, now: Instant) {
        if exchange.outcome != Outcome::Unparsable {
            return;
        }
        let Some(protocol) = self.flows.remove(&exchange.flow) else {
            return;
        };
        if let Some(suppressed) = self.warnings.allow(protocol, now) {
            self.telemetry.warning(&Warning::ForeignProtocol {
                protocol,
                flow: exchange.flow,
                suppressed,
            });
        }
    }
}

impl Source {
    async fn run(mut self, mut capture: LiveCapture) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            tokio::select! {
                segment = capture.segments.recv() => match segment {
                    Some(captured) => {
                        self.capture_clock_ns = self.capture_clock_ns.max(captured.segment.ts_ns);
                        capture.stats.taken(captured.segment.payload.len());
                        self.foreign.segment(&captured.segment);
                        // Bytes the capture lost are a gap at once (no hole timeout).
                        self.assembler
                            .push_cut(captured.segment, captured.missing, &mut self.ready);
                    }
                    None => break,
                },
                _ = housekeeping.tick() => {
                    let now = match self.feed {
                        Feed::Live => now_ns(),
                        Feed::Offline => self.capture_clock_ns,
                    };
                    self.assembler.expire(now, &mut self.ready);
                    self.report(&capture);
                    self.heartbeat.beat();
                }
            }
            let open = match self.feed {
                Feed::Live => self.hand_over(),
                Feed::Offline => self.hand_over_waiting().await,
            };
            if !open {
                return;
            }
        }
        // Capture stopped: every request still waiting comes out (as `no_response` if its
        // answer was never seen), then the channel closes and the mirror drains.
        self.assembler.finish(&mut self.ready);
        match self.feed {
            Feed::Live => self.hand_over(),
            Feed::Offline => self.hand_over_waiting().await,
        };
        self.report(&capture);
    }

    /// Sends completed exchanges, waiting for room (offline feed); false once the mirror is
    /// gone.
    async fn hand_over_waiting(&mut self) -> bool {
        if self.ready.is_empty() {
            return true;
        }
        self.report_h2_losses();
        let now = Instant::now();
        for exchange in std::mem::take(&mut self.ready) {
            self.foreign.exchange(&exchange, now);
            if self.tx.send(exchange).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Sends completed exchanges without waiting; false once the mirror is gone.
    fn hand_over(&mut self) -> bool {
        if !self.ready.is_empty() {
            self.report_h2_losses();
        }
        let now = Instant::now();
        for exchange in self.ready.drain(..) {
            self.foreign.exchange(&exchange, now);
            match self.tx.try_send(exchange) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.telemetry.dropped(DropStage::ExchangeChannel, 1)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    fn report(&mut self, capture: &LiveCapture) {
        let now = capture.stats.snapshot();
        let was = self.reported.capture;
        self.telemetry
            .segments_captured(now.segments - was.segments);
        self.dropped(DropStage::Capture, now.dropped - was.dropped);
        self.dropped(DropStage::SegmentTruncated, now.truncated - was.truncated);
        for (result, n) in now.kernel.since(&was.kernel).by_result() {
            if n > 0 {
                self.telemetry.kernel_packets(result, n);
            }
        }
        for (stage, n) in now.undecodable.since(&was.undecodable) {
            self.dropped(stage, n);
        }
        if now.tap_lost != was.tap_lost {
            self.telemetry.tap_attached(!now.tap_lost);
        }
        self.reported.capture = now;
        let queued = capture.stats.queued_bytes.load(Ordering::Relaxed);
        self.telemetry.memory(MemoryStage::Capture, queued);

        let re = self.assembler.reassembly_stats();
        let was = self.reported.reassembly;
        self.dropped(
            DropStage::Reassembly,
            re.memory_evictions - was.memory_evictions,
        );
        self.dropped(
            DropStage::FlowEvicted,
            re.flow_evictions - was.flow_evictions,
        );
        self.telemetry
            .reassembly_load(re.flows_active, re.bytes_buffered);
        self.telemetry
            .memory(MemoryStage::Reassembly, re.bytes_buffered);
        self.reported.reassembly = re;

        let http = self.assembler.http_stats();
        self.dropped(
            DropStage::HttpMemory,
            http.memory_evictions - self.reported.http_memory_evictions,
        );
        self.reported.http_memory_evictions = http.memory_evictions;
        self.telemetry.memory(MemoryStage::Http, http.bytes_held);
        // Production responses that answered no request they could be proven to answer.
        self.dropped(
            DropStage::OrphanResponse,
            http.orphan_responses - self.reported.orphan_responses,
        );
        self.reported.orphan_responses = http.orphan_responses;
        self.report_h2_losses();
    }

    /// Reports HTTP/2 streams lost since the last report (before the exchanges they belong to
    /// are handed over, so a reader of the metrics never sees the exchanges first).
    fn report_h2_losses(&mut self) {
        let http = self.assembler.http_stats();
        for (i, reason) in StreamLoss::ALL.into_iter().enumerate() {
            let lost = http.lost(reason);
            if lost > self.reported.h2_lost[i] {
                self.telemetry
                    .h2_streams_lost(reason, lost - self.reported.h2_lost[i]);
                self.reported.h2_lost[i] = lost;
            }
        }
    }
}

impl Source {
    fn dropped(&self, stage: DropStage, n: u64) {
        if n > 0 {
            self.telemetry.dropped(stage, n);
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_core::testkit::Conn;

    /// Opens a connection (handshake and a request) from client port `port`.
    fn connection(port: u16) -> Vec<shadow_core::segment::Segment> {
        let mut c = Conn::new(&format!("10.0.0.1:{port}"), "10.0.0.2:8080");
        c.handshake().request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        c.into_segments()
    }

    fn flow_evictions(config: &Config) -> u64 {
        let mut assembler = assembler(&config.capture);
        let mut out = Vec::new();
        for segment in [connection(40000), connection(40001), connection(40002)].concat() {
            assembler.push(segment, &mut out);
        }
        assembler.reassembly_stats().flow_evictions
    }

    #[test]
    fn configured_reassembly_limits_reach_the_reassembler() {
        let defaults = crate::config::test_config("");
        assert_eq!(
            flow_evictions(&defaults),
            0,
            "the default holds 100000 flows"
        );
        let tiny = Config::from_toml(
            "[capture]\nports = [8080]\n[capture.reassembly]\nmax_flows = 1\n\
             [shadow]\nurl = \"http://127.0.0.1:8081\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        assert_eq!(
            flow_evictions(&tiny),
            2,
            "one flow kept: each new one evicts"
        );
    }

    #[test]
    fn evicted_flows_dropped_http_state_and_memory_reach_telemetry() {
        use crate::capture::SharedStats;
        use crate::telemetry::{Event, Recorder};

        let config = Config::from_toml(
            "[capture]\nports = [8080]\nmax_body_bytes = 4096\nmax_http_buffered_bytes = 8192\n\
             [capture.reassembly]\nmax_flows = 2\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let recorder = Arc::new(Recorder::new());
        let (tx, _rx) = mpsc::channel(16);
        let mut source = Source {
            assembler: assembler(&config.capture),
            tx,
            telemetry: recorder.clone(),
            foreign: ForeignTraffic::new(recorder.clone()),
            ready: Vec::new(),
            reported: Reported::default(),
            feed: Feed::Live,
            capture_clock_ns: 0,
            heartbeat: Heartbeat::new(),
        };
        // Four connections one after the other, each holding 5 KiB of an unfinished head: the
        // third and fourth evict the first two from the flow table, and no two fit in 8 KiB.
        let conns: Vec<Vec<Segment>> = (0..4)
            .map(|i| {
                let mut c = Conn::new(&format!("10.0.0.1:{}", 40000 + i), "10.0.0.2:8080");
                let pad = format!("X-Pad: {}\r\n", "p".repeat(5000));
                c.handshake()
                    .request(b"GET / HTTP/1.1\r\n")
                    .request(pad.as_bytes());
                c.into_segments()
            })
            .collect();
        for segment in conns.concat() {
            source.assembler.push(segment, &mut source.ready);
        }
        let (_segments_tx, segments) = mpsc::channel(1);
        let capture = LiveCapture {
            segments,
            stats: Arc::new(SharedStats::default()),
            _guard: Box::new(()),
        };
        source.report(&capture);
        let http = source.assembler.http_stats();
        assert!(
            http.bytes_held > 5000 && http.bytes_held <= 8192,
            "{http:?}"
        );
        let events = recorder.events();
        let dropped = |stage| {
            events
                .iter()
                .filter_map(|e| match e {
                    Event::Dropped(s, n) if *s == stage => Some(*n),
                    _ => None,
                })
                .sum::<u64>()
        };
        assert_eq!(dropped(DropStage::FlowEvicted), 2);
        assert_eq!(dropped(DropStage::HttpMemory), http.memory_evictions);
        assert!(http.memory_evictions >= 1);
        assert!(events.contains(&Event::Memory(MemoryStage::Http, http.bytes_held)));
        assert!(events.contains(&Event::Memory(MemoryStage::Reassembly, 0)));
        // A second report adds nothing: the counters are deltas.
        let before = recorder.events().len();
        source.report(&capture);
        let again = recorder.events()[before..].to_vec();
        assert!(
            again.iter().all(|e| !matches!(e, Event::Dropped(..))),
            "{again:?}"
        );
    }

    /// Runs connections through the HTTP stage and [`ForeignTraffic`] as the source does.
    fn foreign_warnings(conns: Vec<Vec<Segment>>, at: Instant) -> Vec<Warning> {
        use crate::telemetry::Recorder;
        let recorder = Arc::new(Recorder::new());
        let mut foreign = ForeignTraffic::new(recorder.clone());
        let mut assembler = assembler(&crate::config::test_config("").capture);
        let mut out = Vec::new();
        for segment in shadow_core::testkit::interleave(conns) {
            foreign.segment(&segment);
            assembler.push(segment, &mut out);
        }
        assembler.finish(&mut out);
        for exchange in &out {
            foreign.exchange(exchange, at);
        }
        recorder.warnings()
    }

    /// An HTTP/2 connection with one stream whose request is not valid (no `:path`): its
    /// exchange is `unparsable`, yet HTTP/2 is not foreign.
    fn h2(port: u16) -> Vec<Segment> {
        use shadow_core::testkit::h2::{self, Framing, H2Writer, Style};
        let mut client = H2Writer::default();
        let mut request = h2::client_preface();
        request.extend(client.headers(
            1,
            &[(":method", "GET")],
            true,
            Style::default(),
            Framing::default(),
        ));
        let mut c = Conn::new(&format!("10.0.0.5:{port}"), "10.0.0.2:8080");
        c.handshake()
            .request(&request)
            .response(&h2::settings(&[]))
            .close();
        c.into_segments()
    }

    #[test]
    fn tls_on_the_port_is_named_once_per_interval_and_http2_is_not_foreign() {
        let http1 = {
            let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
            c.handshake()
                .request(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n\x16\x03")
                .response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .close();
            c.into_segments()
        };
        let tls = {
            let mut c = Conn::new("10.0.0.6:40001", "10.0.0.2:8080");
            c.handshake()
                .request(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0])
                .close();
            c.into_segments()
        };
        let tls2 = {
            let mut c = Conn::new("10.0.0.6:40002", "10.0.0.2:8080");
            c.handshake()
                .request(&[0x16, 0x03, 0x03, 0x00, 0x05, 1, 0, 0, 1, 0])
                .close();
            c.into_segments()
        };
        let at = Instant::now();
        let warnings = foreign_warnings(vec![http1.clone(), h2(51234), tls, tls2], at);
        let flow = |client: &str| FlowKey {
            client: client.parse().unwrap(),
            server: "10.0.0.2:8080".parse().unwrap(),
        };
        // The second TLS connection within the minute is held back; HTTP/1.1 and HTTP/2 (even
        // with an unparsable stream) are not named.
        assert_eq!(
            warnings,
            vec![Warning::ForeignProtocol {
                protocol: ForeignProtocol::Tls,
                flow: flow("10.0.0.6:40001"),
                suppressed: 0
            }]
        );
        assert_eq!(
            warnings[0].to_string(),
            "TLS handshake seen on 10.0.0.6:40001 \u{2192} :8080: not cleartext HTTP, not mirrored"
        );
        assert!(foreign_warnings(vec![http1, h2(51235)], at).is_empty());
    }

    #[test]
    fn orphan_responses_and_undecodable_frames_reach_telemetry_as_drops() {
        use crate::capture::SharedStats;
        use crate::telemetry::{Event, Recorder};
        use std::sync::atomic::Ordering;

        let recorder = Arc::new(Recorder::new());
        let (tx, _rx) = mpsc::channel(16);
        let mut source = Source {
            assembler: assembler(&crate::config::test_config("").capture),
            tx,
            telemetry: recorder.clone(),
            foreign: ForeignTraffic::new(recorder.clone()),
            ready: Vec::new(),
            reported: Reported::default(),
            feed: Feed::Live,
            capture_clock_ns: 0,
            heartbeat: Heartbeat::new(),
        };
        // One request answered three times in one segment, then a request answered once.
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        c.handshake()
            .request(b"GET /1 HTTP/1.1\r\n\r\n")
            .response(ok.repeat(3).as_bytes())
            .request(b"GET /2 HTTP/1.1\r\n\r\n")
            .response(ok.as_bytes());
        for segment in c.into_segments() {
            source.assembler.push(segment, &mut source.ready);
        }
        let (_segments_tx, segments) = mpsc::channel(1);
        let stats = Arc::new(SharedStats::default());
        stats.frame_fragment.fetch_add(2, Ordering::Relaxed);
        let capture = LiveCapture {
            segments,
            stats: stats.clone(),
            _guard: Box::new(()),
        };
        source.report(&capture);
        source.report(&capture);
        stats.frame_malformed.fetch_add(1, Ordering::Relaxed);
        source.report(&capture);
        let drops: Vec<Event> = recorder
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Dropped(..)))
            .collect();
        assert_eq!(
            drops,
            vec![
                Event::Dropped(DropStage::IpFragment, 2),
                Event::Dropped(DropStage::OrphanResponse, 2),
                Event::Dropped(DropStage::FrameMalformed, 1),
            ]
        );
        let paths: Vec<_> = source
            .ready
            .iter()
            .map(|x| x.request.as_ref().map(|r| r.target.clone()))
            .collect();
        assert_eq!(paths, vec![Some("/1".to_string()), Some("/2".to_string())]);
        assert!(
            source
                .ready
                .iter()
                .all(|x| x.outcome == shadow_core::http::Outcome::Complete
                    && x.timing.latency_ns().is_some_and(|ns| ns > 0))
        );
    }
}
