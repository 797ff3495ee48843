//! Maps shared with the daemon (the watched ports, the event ring and the per-CPU counters) and
//! the program's own scratch slot.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use shadow_common::{PORT_SLOTS, RING_BYTES, counter};

/// Production ports to tap: index = port in host order, non-zero = watched. Written by the
/// daemon. An array, not a hash map: the verifier inlines the lookup into a bounds check and a
/// load, where a hash lookup is a helper call (and the program looks up two ports per packet).
#[map]
pub static PORTS: Array<u8> = Array::with_max_entries(PORT_SLOTS, 0);

/// Segment records for the daemon (see `shadow_common::SegmentEvent`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Per-CPU counters, indexed by `shadow_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// One per-CPU slot that [`opaque`] passes values through.
#[map]
pub static OPAQUE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// `value`, written to a map slot and read back: the verifier then sees an unknown number
/// instead of the exact range each path computed it with, so paths that differ only in that
/// value are verified once. Without it, every combination of IPv6 extension headers would
/// verify the whole segment copy again (far past the verifier's instruction budget). `None`
/// only if the slot is missing, which it never is.
#[inline(always)]
pub fn opaque(value: u32) -> Option<u32> {
    let ptr = OPAQUE.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot of this program, valid for the duration of the call; volatile so
    // that the compiler does not forward the value past the map.
    unsafe {
        core::ptr::write_volatile(ptr, value);
        Some(core::ptr::read_volatile(ptr))
    }
}

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
    PORTS
        .get(u32::from(port))
        .is_some_and(|watched| *watched != 0)
}
