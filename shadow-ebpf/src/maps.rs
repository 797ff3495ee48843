//! Maps shared with the daemon: the watched ports, the event ring and the per-CPU counters.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use shadow_common::{MAX_PORTS, RING_BYTES, counter};

/// Production ports to tap (key: port in host order; value unused). Written by the daemon.
#[map]
pub static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

/// Segment records for the daemon (see `shadow_common::SegmentEvent`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Per-CPU counters, indexed by `shadow_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Adds one to the per-CPU counter `index`.
#[inline(always)]
pub fn bump(index: u32) {
    if let Some(ptr) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer can race with this program on this CPU.
        unsafe { *ptr += 1 };
    }
}

/// Whether `port` is one of the watched production ports.
#[inline(always)]
pub fn is_watched(port: u16) -> bool {
    PORTS.get_ptr(port).is_some()
}
