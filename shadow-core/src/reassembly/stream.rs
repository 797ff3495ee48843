//! One direction of a connection: the next expected sequence number and the out-of-order
//! bytes waiting for the hole before them to be filled.
//!
//! Positions are kept as 64-bit offsets from the first byte seen (`delivered` is the offset of
//! the next expected byte), so wrap-around of the 32-bit sequence space never matters: an
//! incoming sequence number is placed by its signed distance to `next_seq`.

use super::{ReassemblyStats, StreamEvent};
use crate::segment::{Direction, FlowKey};
use bytes::Bytes;
use std::collections::BTreeMap;

/// What a recorded missing range counts against the buffer caps.
const MISSING_RANGE_COST: usize = 64;

/// Bytes that arrived ahead of the next expected one.
#[derive(Debug)]
struct Pending {
    bytes: Bytes,
    seq: u32,
    ack: Option<u32>,
    ts_ns: u64,
}

/// Where the events of this direction go.
pub(super) struct Sink<'a> {
    pub flow: FlowKey,
    pub dir: Direction,
    pub out: &'a mut Vec<StreamEvent>,
    pub stats: &'a mut ReassemblyStats,
}

impl Sink<'_> {
    fn data(&mut self, seq: u32, ack: Option<u32>, ts_ns: u64, bytes: Bytes) {
        self.stats.bytes_delivered += bytes.len() as u64;
        self.out.push(StreamEvent::Data {
            flow: self.flow,
            dir: self.dir,
            seq,
            ack,
            ts_ns,
            bytes,
        });
    }

    fn gap(&mut self, len: u64, ts_ns: u64) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        self.out.push(StreamEvent::Gap {
            flow: self.flow,
            dir: self.dir,
            len,
            ts_ns,
        });
    }
}

/// One direction's reassembly state.
#[derive(Debug, Default)]
pub(super) struct HalfStream {
    /// `next_seq` is meaningful (a SYN or a first data segment was seen).
    synced: bool,
    /// The stream's start (SYN) was seen.
    saw_syn: bool,
    /// Sequence number of the next expected byte.
    next_seq: u32,
    /// Offset of the next expected byte.
    delivered: u64,
    /// Out-of-order segments by offset.
    ooo: BTreeMap<u64, Pending>,
    /// Payload bytes in `ooo`.
    ooo_bytes: usize,
    /// Ranges known to be missing (payload cut by the capture's snap length): offset → length.
    missing: BTreeMap<u64, u64>,
    /// Offset just past the last byte, once a FIN was seen.
    fin_at: Option<u64>,
    /// The FIN was delivered (every byte before it too).
    fin_done: bool,
    /// Capture time at which the current first hole was first noticed.
    hole_since_ns: Option<u64>,
}

impl HalfStream {
    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn saw_syn(&self) -> bool {
        self.saw_syn
    }

    pub fn fin_done(&self) -> bool {
        self.fin_done
    }

    /// Memory held for out-of-order data: payload bytes plus a charge per recorded missing
    /// range, so that neither grows past the caps.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes + self.missing.len() * MISSING_RANGE_COST
    }

    pub fn hole_since_ns(&self) -> Option<u64> {
        self.hole_since_ns
    }

    /// The sequence number after the SYN (the SYN occupies one).
    pub fn isn_next(&self) -> u32 {
        self.next_seq.wrapping_sub(self.delivered as u32)
    }

    /// Starts the stream at `next_seq` (after a SYN, or at the first byte seen mid-stream).
    pub fn start(&mut self, next_seq: u32, syn: bool) {
        *self = HalfStream {
            synced: true,
            saw_syn: syn,
            next_seq,
            ..HalfStream::default()
        };
    }

    /// Offset of sequence number `seq`, placed by its signed distance to the next expected byte.
    fn offset_of(&self, seq: u32) -> i64 {
        self.delivered as i64 + i64::from(seq.wrapping_sub(self.next_seq) as i32)
    }

    /// Accepts one segment's payload (and FIN). `missing` bytes following the payload were
    /// cut by the capture and will never be seen.
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        &mut self,
        seq: u32,
        ack: Option<u32>,
        ts_ns: u64,
        payload: Bytes,
        missing: u32,
        fin: bool,
        sink: &mut Sink<'_>,
    ) {
        let start = self.offset_of(seq);
        let end = start + payload.len() as i64;
        if fin && self.fin_at.is_none() && end + i64::from(missing) >= self.delivered as i64 {
            self.fin_at = Some((end + i64::from(missing)) as u64);
        }
        if missing > 0 && end >= self.delivered as i64 {
            self.missing.insert(end as u64, u64::from(missing));
        }
        if !payload.is_empty() {
            let delivered = self.delivered as i64;
            if end <= delivered {
                sink.stats.duplicate_bytes += payload.len() as u64;
            } else if start <= delivered {
                let skip = (delivered - start) as usize;
                sink.stats.duplicate_bytes += skip as u64;
                let seq = seq.wrapping_add(skip as u32);
                self.deliver(seq, ack, ts_ns, payload.slice(skip..), sink);
            } else {
                self.buffer(start as u64, seq, ack, ts_ns, payload, sink);
                if self.hole_since_ns.is_none() {
                    self.hole_since_ns = Some(ts_ns);
                }
            }
        }
        self.drain(ts_ns, sink);
    }

    fn buffer(
        &mut self,
        at: u64,
        seq: u32,
        ack: Option<u32>,
        ts_ns: u64,
        bytes: Bytes,
        sink: &mut Sink<'_>,
    ) {
        if let Some(existing) = self.ooo.get(&at) {
            if existing.bytes.len() >= bytes.len() {
                sink.stats.duplicate_bytes += bytes.len() as u64;
                return;
            }
            sink.stats.duplicate_bytes += existing.bytes.len() as u64;
            self.ooo_bytes -= existing.bytes.len();
        }
        self.ooo_bytes += bytes.len();
        self.ooo.insert(
            at,
            Pending {
                bytes,
                seq,
                ack,
                ts_ns,
            },
        );
    }

    fn deliver(&mut self, seq: u32, ack: Option<u32>, ts_ns: u64, bytes: Bytes, sink: &mut Sink) {
        let len = bytes.len() as u64;
        self.delivered += len;
        self.next_seq = seq.wrapping_add(len as u32);
        sink.data(seq, ack, ts_ns, bytes);
    }

    /// Delivers buffered segments that became contiguous, known-missing ranges as gaps, and
    /// the FIN once every byte before it was delivered.
    fn drain(&mut self, ts_ns: u64, sink: &mut Sink<'_>) {
        loop {
            if let Some((&at, &len)) = self.missing.first_key_value() {
                if at + len <= self.delivered {
                    self.missing.pop_first();
                    continue;
                }
                if at <= self.delivered {
                    self.missing.pop_first();
                    let skip = at + len - self.delivered;
                    self.skip(skip, ts_ns, sink);
                    continue;
                }
            }
            let Some(entry) = self.ooo.first_entry() else {
                break;
            };
            let at = *entry.key();
            if at > self.delivered {
                break;
            }
            let pending = entry.remove();
            self.ooo_bytes -= pending.bytes.len();
            let end = at + pending.bytes.len() as u64;
            if end <= self.delivered {
                sink.stats.duplicate_bytes += pending.bytes.len() as u64;
                continue;
            }
            let skip = (self.delivered - at) as usize;
            sink.stats.duplicate_bytes += skip as u64;
            let seq = pending.seq.wrapping_add(skip as u32);
            self.deliver(
                seq,
                pending.ack,
                pending.ts_ns,
                pending.bytes.slice(skip..),
                sink,
            );
        }
        if self.ooo.is_empty() {
            self.hole_since_ns = None;
        }
        if !self.fin_done && self.fin_at.is_some_and(|fin| fin <= self.delivered) {
            self.fin_done = true;
            sink.out.push(StreamEvent::Fin {
                flow: sink.flow,
                dir: sink.dir,
                ts_ns,
            });
        }
    }

    /// Declares `len` bytes after the next expected one lost.
    fn skip(&mut self, len: u64, ts_ns: u64, sink: &mut Sink<'_>) {
        if len == 0 {
            return;
        }
        self.delivered += len;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        sink.gap(len, ts_ns);
    }

    /// Declares the first hole permanent: a gap up to the first buffered segment, which is then
    /// delivered with whatever follows it. Returns false if there was no hole.
    pub fn skip_first_hole(&mut self, ts_ns: u64, sink: &mut Sink<'_>) -> bool {
        let next_data = self.ooo.first_key_value().map(|(&at, _)| at);
        let next_missing = self.missing.first_key_value().map(|(&at, _)| at);
        let Some(at) = next_data.into_iter().chain(next_missing).min() else {
            return false;
        };
        self.skip(at.saturating_sub(self.delivered), ts_ns, sink);
        self.hole_since_ns = None;
        // A missing range starting here is skipped by the drain below.
        self.drain(ts_ns, sink);
        if self.hole_since_ns.is_none() && !self.ooo.is_empty() {
            self.hole_since_ns = Some(ts_ns);
        }
        true
    }

    /// At the end of the connection: every remaining hole becomes a gap, including one between
    /// the last byte delivered and a FIN seen beyond it.
    pub fn flush(&mut self, ts_ns: u64, sink: &mut Sink<'_>) {
        while self.skip_first_hole(ts_ns, sink) {}
        if let Some(fin) = self.fin_at
            && fin > self.delivered
        {
            self.skip(fin - self.delivered, ts_ns, sink);
            self.drain(ts_ns, sink);
        }
        self.ooo_bytes = 0;
        self.missing.clear();
    }
}
