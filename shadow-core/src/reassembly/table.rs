//! The connection table: routes segments to their connection's two [`HalfStream`]s and
//! enforces the limits (idle timeout, hole timeout, per-flow and global buffer caps, flow count).

use super::stream::{HalfStream, Sink};
use super::{CloseReason, ReassemblyConfig, ReassemblyStats, StreamEvent};
use crate::segment::{Direction, FlowKey, Segment};
use std::collections::HashMap;

/// Both directions of one connection.
#[derive(Debug, Default)]
struct Flow {
    request: HalfStream,
    response: HalfStream,
    last_seen_ns: u64,
}

impl Flow {
    fn half(&mut self, dir: Direction) -> &mut HalfStream {
        match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    fn buffered(&self) -> usize {
        self.request.buffered() + self.response.buffered()
    }
}

/// Turns segments of many connections into ordered per-direction byte streams.
///
/// Feed segments in capture order with [`push`](Self::push); call [`expire`](Self::expire)
/// from a timer in a live daemon (push also expires as capture time advances) and
/// [`finish`](Self::finish) at the end of a capture.
#[derive(Debug, Default)]
pub struct Reassembler {
    config: ReassemblyConfig,
    flows: HashMap<FlowKey, Flow>,
    /// Connections closed by FIN or RST, with the capture time they closed: late
    /// retransmissions for them are ignored instead of opening a new, mid-stream connection.
    closed: HashMap<FlowKey, u64>,
    stats: ReassemblyStats,
    buffered: usize,
    last_expire_ns: u64,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Current counters.
    pub fn stats(&self) -> ReassemblyStats {
        ReassemblyStats {
            flows_active: self.flows.len() as u64,
            bytes_buffered: self.buffered as u64,
            ..self.stats
        }
    }

    /// Takes one segment; events are appended to `out`.
    pub fn push(&mut self, segment: Segment, out: &mut Vec<StreamEvent>) {
        self.push_cut(segment, 0, out);
    }

    /// Like [`push`](Self::push) for a segment whose payload was cut by the capture: the
    /// `missing` bytes after the payload will never be seen and become a gap.
    pub fn push_cut(&mut self, segment: Segment, missing: u32, out: &mut Vec<StreamEvent>) {
        self.stats.segments += 1;
        let now = segment.ts_ns;
        if now >= self.last_expire_ns.saturating_add(self.expire_interval()) {
            self.expire(now, out);
        }
        let key = segment.flow;
        let flags = segment.flags;
        let dir = segment.dir;

        if !self.flows.contains_key(&key) {
            let recently_closed = !flags.syn() && self.closed.contains_key(&key);
            if recently_closed
                || flags.rst()
                || (segment.payload.is_empty() && missing == 0 && !flags.syn())
            {
                self.stats.ignored_segments += 1;
                return;
            }
            self.make_room(now, out);
            self.closed.remove(&key);
            self.stats.flows_total += 1;
            self.flows.insert(key, Flow::default());
        }

        if flags.rst() {
            self.close(key, CloseReason::Reset, now, out);
            return;
        }

        // A SYN on finished (or fully closing) addresses starts a new connection.
        if flags.syn() && !flags.ack() && dir == Direction::Request {
            let flow = &self.flows[&key];
            let reused = flow.request.synced()
                && (flow.request.isn_next() != segment.seq.wrapping_add(1)
                    || !flow.request.saw_syn());
            if reused {
                self.close(key, CloseReason::Reused, now, out);
                self.stats.flows_total += 1;
                self.flows.insert(key, Flow::default());
            }
        }

        let flow = self.flows.get_mut(&key).expect("flow inserted above");
        flow.last_seen_ns = flow.last_seen_ns.max(now);
        let before = flow.buffered();
        let half = flow.half(dir);
        let mut sink = Sink {
            flow: key,
            dir,
            out,
            stats: &mut self.stats,
        };
        let mut seq = segment.seq;
        if flags.syn() {
            seq = seq.wrapping_add(1);
            if !half.saw_syn() {
                half.start(seq, true);
            }
        } else if !half.synced() {
            if segment.payload.is_empty() && missing == 0 && !flags.fin() {
                return;
            }
            half.start(seq, false);
            sink.stats.midstream_joins += 1;
            sink.out.push(StreamEvent::Joined { flow: key, dir });
        }
        let ack = flags.ack().then_some(segment.ack);
        half.accept(
            seq,
            ack,
            now,
            segment.payload,
            missing,
            flags.fin(),
            &mut sink,
        );
        // A hole that has waited too long for its retransmission is a gap.
        if half
            .hole_since_ns()
            .is_some_and(|since| now.saturating_sub(since) > self.config.hole_timeout_ns)
        {
            half.skip_first_hole(now, &mut sink);
        }
        // Per-flow cap: declare the holes of the fuller direction lost.
        while flow.buffered() > self.config.max_flow_buffer {
            let fuller = if flow.request.buffered() >= flow.response.buffered() {
                Direction::Request
            } else {
                Direction::Response
            };
            let mut sink = Sink {
                flow: key,
                dir: fuller,
                out,
                stats: &mut self.stats,
            };
            if !flow.half(fuller).skip_first_hole(now, &mut sink) {
                break;
            }
            self.stats.memory_evictions += 1;
        }
        let after = flow.buffered();
        self.buffered = self.buffered + after - before;
        let done = flow.request.fin_done() && flow.response.fin_done();
        if done {
            self.close(key, CloseReason::Fin, now, out);
        }
        self.enforce_global_cap(now, out);
    }

    fn expire_interval(&self) -> u64 {
        (self.config.idle_timeout_ns / 8).clamp(1, 1_000_000_000)
    }

    /// Closes connections idle for longer than the idle timeout at capture time `now_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<StreamEvent>) {
        self.last_expire_ns = now_ns;
        let idle = self.config.idle_timeout_ns;
        let mut stale: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| now_ns.saturating_sub(f.last_seen_ns) > idle)
            .map(|(k, _)| *k)
            .collect();
        stale.sort_unstable();
        self.closed
            .retain(|_, closed_at| now_ns.saturating_sub(*closed_at) <= idle);
        for key in stale {
            self.stats.idle_evictions += 1;
            self.close(key, CloseReason::Idle, now_ns, out);
        }
    }

    /// End of capture: every connection is flushed (open holes become gaps) and closed.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let mut keys: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .map(|(k, f)| (f.last_seen_ns, *k))
            .collect();
        keys.sort_unstable();
        for (ts, key) in keys {
            self.close(key, CloseReason::EndOfCapture, ts, out);
        }
    }

    /// Flushes and forgets one connection.
    fn close(&mut self, key: FlowKey, reason: CloseReason, ts_ns: u64, out: &mut Vec<StreamEvent>) {
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        self.buffered -= flow.buffered();
        for dir in [Direction::Request, Direction::Response] {
            let mut sink = Sink {
                flow: key,
                dir,
                out,
                stats: &mut self.stats,
            };
            flow.half(dir).flush(ts_ns, &mut sink);
        }
        out.push(StreamEvent::Closed {
            flow: key,
            reason,
            ts_ns,
        });
        if matches!(reason, CloseReason::Fin | CloseReason::Reset) {
            if self.closed.len() >= self.config.max_flows.max(1) {
                self.closed.clear();
            }
            self.closed.insert(key, ts_ns);
        }
    }

    /// Evicts the least recently seen connection when the table is full.
    fn make_room(&mut self, now: u64, out: &mut Vec<StreamEvent>) {
        while self.flows.len() >= self.config.max_flows.max(1) {
            let Some(oldest) = self
                .flows
                .iter()
                .min_by_key(|(k, f)| (f.last_seen_ns, **k))
                .map(|(k, _)| *k)
            else {
                return;
            };
            self.stats.flow_evictions += 1;
            self.close(oldest, CloseReason::Evicted, now, out);
        }
    }

    /// Over the global cap, the holes of the connections with the most buffered bytes are
    /// declared lost until the total fits.
    fn enforce_global_cap(&mut self, now: u64, out: &mut Vec<StreamEvent>) {
        while self.buffered > self.config.max_buffered {
            let Some(key) = self
                .flows
                .iter()
                .filter(|(_, f)| f.buffered() > 0)
                .max_by_key(|(k, f)| (f.buffered(), std::cmp::Reverse(**k)))
                .map(|(k, _)| *k)
            else {
                return;
            };
            let flow = self.flows.get_mut(&key).expect("key from the table");
            let before = flow.buffered();
            let dir = if flow.request.buffered() >= flow.response.buffered() {
                Direction::Request
            } else {
                Direction::Response
            };
            let mut sink = Sink {
                flow: key,
                dir,
                out,
                stats: &mut self.stats,
            };
            flow.half(dir).skip_first_hole(now, &mut sink);
            self.stats.memory_evictions += 1;
            let after = flow.buffered();
            self.buffered = self.buffered + after - before;
            if flow.request.fin_done() && flow.response.fin_done() {
                self.close(key, CloseReason::Fin, now, out);
            }
        }
    }
}
