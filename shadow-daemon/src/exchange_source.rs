//! The live front half of `shadowd run`: capture → reassembly → http. Segments from the tap
//! become [`Exchange`]s on a bounded channel that the mirror reads.
//!
//! Nothing here ever waits on the mirror: a full channel drops the exchange and counts it
//! (`capture_dropped_total{stage="exchange_channel"}`), so a slow shadow can never slow the
//! capture, let alone production.

use crate::capture::{CaptureStats, LiveCapture, TapSpec, open_live};
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::sinks::metrics::Metrics;
use shadow_core::http::{Exchange, ExchangeAssembler, HttpConfig};
use shadow_core::reassembly::{ReassemblyConfig, ReassemblyStats};
use shadow_core::vocabulary::DropStage;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How often idle connections are expired and counters exported.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

/// Starts the tap described by `config.capture` and a task turning its segments into
/// exchanges; returns the channel they arrive on. The channel closes when the capture stops
/// (shutdown), after every pending exchange has been flushed.
pub fn start(
    config: &Config,
    metrics: &Metrics,
    shutdown: Shutdown,
) -> anyhow::Result<mpsc::Receiver<Exchange>> {
    let spec = TapSpec {
        interface: config.capture.interface.clone(),
        ports: config.capture.ports.clone(),
    };
    let capture = open_live(config.capture.kind, &spec, shutdown)?;
    let (tx, rx) = mpsc::channel(config.capture.exchange_channel.max(1));
    let http = HttpConfig {
        max_body: config.capture.max_body_bytes,
        ..HttpConfig::default()
    };
    let assembler = ExchangeAssembler::new(ReassemblyConfig::default(), http);
    let source = Source {
        assembler,
        tx,
        metrics: metrics.clone(),
        ready: Vec::new(),
        reported: Reported::default(),
    };
    tokio::spawn(source.run(capture));
    Ok(rx)
}

/// Counters already exported (the sources keep running totals; metrics get the deltas).
#[derive(Default)]
struct Reported {
    capture: CaptureStats,
    reassembly: ReassemblyStats,
}

struct Source {
    assembler: ExchangeAssembler,
    tx: mpsc::Sender<Exchange>,
    metrics: Metrics,
    ready: Vec<Exchange>,
    reported: Reported,
}

impl Source {
    async fn run(mut self, mut capture: LiveCapture) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            tokio::select! {
                segment = capture.segments.recv() => match segment {
                    Some(segment) => self.assembler.push(segment, &mut self.ready),
                    None => break,
                },
                _ = housekeeping.tick() => {
                    self.assembler.expire(now_ns(), &mut self.ready);
                    self.report(&capture);
                }
            }
            if !self.hand_over() {
                return;
            }
        }
        // Capture stopped: every request still waiting comes out (as `no_response` if its
        // answer was never seen), then the channel closes and the mirror drains.
        self.assembler.finish(&mut self.ready);
        self.hand_over();
        self.report(&capture);
    }

    /// Sends completed exchanges without waiting; false once the mirror is gone.
    fn hand_over(&mut self) -> bool {
        for exchange in self.ready.drain(..) {
            match self.tx.try_send(exchange) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.capture_dropped(DropStage::ExchangeChannel, 1)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    fn report(&mut self, capture: &LiveCapture) {
        let now = capture.stats.snapshot();
        let was = self.reported.capture;
        self.metrics.segments_captured(now.segments - was.segments);
        self.dropped(DropStage::Capture, now.dropped - was.dropped);
        self.dropped(DropStage::SegmentTruncated, now.truncated - was.truncated);
        for (result, n) in now.kernel.since(&was.kernel).by_result() {
            if n > 0 {
                self.metrics.kernel_packets(result, n);
            }
        }
        self.reported.capture = now;

        let re = self.assembler.reassembly_stats();
        let was = self.reported.reassembly;
        self.dropped(
            DropStage::Reassembly,
            re.memory_evictions - was.memory_evictions,
        );
        self.metrics
            .set_reassembly(re.flows_active as i64, re.bytes_buffered as i64);
        self.reported.reassembly = re;
    }
}

impl Source {
    fn dropped(&self, stage: DropStage, n: u64) {
        if n > 0 {
            self.metrics.capture_dropped(stage, n);
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
