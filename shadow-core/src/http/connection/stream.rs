//! One direction's reassembled bytes not yet consumed by the parser, with the capture time and
//! acknowledgment number of the segment each byte came in, so a message gets the times of its
//! own first and last bytes and a response the ack it was sent with.

use crate::http::stats::HttpStats;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

/// Capture time and ack of the segment that carried the stream bytes up to `end`.
#[derive(Debug, Clone, Copy)]
struct ChunkMark {
    /// Stream offset just past the chunk.
    end: u64,
    /// Capture time of the segment, ns.
    ts: u64,
    /// Its acknowledgment number, if the ACK flag was set.
    ack: Option<u32>,
}

/// The unconsumed bytes of one direction of a connection.
#[derive(Debug, Default)]
pub(crate) struct StreamBuffer {
    /// The bytes; parsers take them off the front.
    pub buf: BytesMut,
    /// Chunks overlapping `buf`, oldest first.
    marks: VecDeque<ChunkMark>,
    /// Stream offset of `buf[0]`.
    taken: u64,
    /// Sequence number of `buf[0]`.
    front_seq: u32,
    /// Capture time of the last byte taken off the front.
    last_taken_ts: u64,
}

impl StreamBuffer {
    /// Appends the payload of one segment.
    pub fn append(&mut self, seq: u32, ack: Option<u32>, ts: u64, bytes: &Bytes) {
        if self.buf.is_empty() {
            self.front_seq = seq;
        }
        self.buf.extend_from_slice(bytes);
        self.marks.push_back(ChunkMark {
            end: self.taken + self.buf.len() as u64,
            ts,
            ack,
        });
    }

    /// Bytes held: the buffer's allocation and the marks of its chunks.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.marks.len() * std::mem::size_of::<ChunkMark>()
    }

    /// Capture time and ack of the segment holding `buf[0]`.
    pub fn front(&self) -> (u64, Option<u32>) {
        self.marks
            .front()
            .map_or((self.last_taken_ts, None), |m| (m.ts, m.ack))
    }

    /// Sequence number of `buf[0]`.
    pub fn front_seq(&self) -> u32 {
        self.front_seq
    }

    /// Capture time of the newest bytes.
    pub fn latest_ts(&self) -> u64 {
        self.marks.back().map_or(self.last_taken_ts, |m| m.ts)
    }

    /// `n` bytes were taken off the front of `buf`; returns the capture time of the last one.
    pub fn consumed(&mut self, n: usize) -> u64 {
        if n > 0 {
            self.taken += n as u64;
            self.front_seq = self.front_seq.wrapping_add(n as u32);
            let last = self.taken - 1;
            while self.marks.front().is_some_and(|m| m.end <= last) {
                self.marks.pop_front();
            }
            if let Some(m) = self.marks.front() {
                self.last_taken_ts = m.ts;
            }
            while self.marks.front().is_some_and(|m| m.end <= self.taken) {
                self.marks.pop_front();
            }
        }
        self.last_taken_ts
    }

    /// Drops `n` bytes that belong to no message.
    pub fn discard(&mut self, n: usize, stats: &mut HttpStats) {
        if n == 0 {
            return;
        }
        self.buf.advance(n);
        stats.skipped_bytes += n as u64;
        self.consumed(n);
    }

    /// Forgets everything buffered (after a gap or at the end of the stream).
    pub fn reset(&mut self, stats: &mut HttpStats) {
        let n = self.buf.len();
        self.buf.clear();
        stats.skipped_bytes += n as u64;
        self.consumed(n);
    }
}
