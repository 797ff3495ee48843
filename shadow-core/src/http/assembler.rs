//! Segments in, exchanges out: a [`Reassembler`] feeding one [`ConnectionParser`] per
//! connection. This is what the live daemon, `inspect` and `replay` use.

use super::config::HttpConfig;
use super::connection::ConnectionParser;
use super::exchange::Exchange;
use super::stats::HttpStats;
use crate::reassembly::{Reassembler, ReassemblyConfig, ReassemblyStats, StreamEvent};
use crate::segment::{FlowKey, Segment};
use std::collections::HashMap;

/// Rebuilds HTTP exchanges from the segments of many connections, incrementally.
///
/// Exchanges of one connection come out in the order its requests were sent.
#[derive(Default)]
pub struct ExchangeAssembler {
    reassembler: Reassembler,
    http: HttpConfig,
    conns: HashMap<FlowKey, ConnectionParser>,
    stats: HttpStats,
    events: Vec<StreamEvent>,
}

impl ExchangeAssembler {
    /// An assembler with the given limits.
    pub fn new(reassembly: ReassemblyConfig, http: HttpConfig) -> Self {
        Self {
            reassembler: Reassembler::new(reassembly),
            http,
            ..Self::default()
        }
    }

    /// Takes one segment; exchanges it completes are appended to `out`.
    pub fn push(&mut self, segment: Segment, out: &mut Vec<Exchange>) {
        self.push_cut(segment, 0, out);
    }

    /// Takes a segment whose payload was cut by the capture, `missing` bytes short.
    pub fn push_cut(&mut self, segment: Segment, missing: u32, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.reassembler.push_cut(segment, missing, &mut events);
        self.apply(&mut events, out);
        self.events = events;
    }

    /// Closes connections idle at capture time `now_ns` (the live daemon's periodic flush):
    /// their requests still waiting come out as [`super::Outcome::NoResponse`].
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.reassembler.expire(now_ns, &mut events);
        self.apply(&mut events, out);
        self.events = events;
    }

    /// End of capture: every connection is closed and everything pending comes out.
    pub fn finish(&mut self, out: &mut Vec<Exchange>) {
        let mut events = std::mem::take(&mut self.events);
        self.reassembler.finish(&mut events);
        self.apply(&mut events, out);
        self.events = events;
    }

    /// HTTP counters (exchanges per outcome, bytes).
    pub fn http_stats(&self) -> HttpStats {
        self.stats
    }

    /// Reassembly counters (flows, buffered bytes, gaps, evictions).
    pub fn reassembly_stats(&self) -> ReassemblyStats {
        self.reassembler.stats()
    }

    fn apply(&mut self, events: &mut Vec<StreamEvent>, out: &mut Vec<Exchange>) {
        let first_new = out.len();
        for event in events.drain(..) {
            let flow = event.flow();
            let conn = self
                .conns
                .entry(flow)
                .or_insert_with(|| ConnectionParser::new(flow, self.http));
            conn.handle(&event, &mut self.stats, out);
            if matches!(event, StreamEvent::Closed { .. }) {
                self.conns.remove(&flow);
            }
        }
        for exchange in &out[first_new..] {
            self.stats.count(exchange.outcome);
        }
    }
}

/// Every exchange of a finished capture, with default limits.
pub fn exchanges_from_segments(segments: impl IntoIterator<Item = Segment>) -> Vec<Exchange> {
    let mut assembler = ExchangeAssembler::default();
    let mut out = Vec::new();
    for segment in segments {
        assembler.push(segment, &mut out);
    }
    assembler.finish(&mut out);
    out
}
