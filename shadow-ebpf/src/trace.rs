//! Opt-in kernel-side trace (aya-log), for when a capture sees nothing: one line per TCP packet
//! the program looks at (ports; for a watched port also direction, sequence number, flags and
//! payload length) and one per packet whose headers it could not read.
//!
//! Zero cost when off: every `debug!` first loads aya-log's `AYA_LOG_LEVEL`, a global in
//! `.rodata` that the daemon sets at load time (0 unless `shadowtap::ebpf=debug` is asked for)
//! and that aya freezes; the verifier knows the value of a frozen read-only map, so the branch
//! is decided at load time and the logging code is neither verified nor run.

use aya_ebpf::programs::TcContext;
use aya_log_ebpf::debug;
use shadow_common::{DIR_REQUEST, KERNEL_TRACE_TARGET};

/// A TCP packet with no watched port.
#[inline(always)]
pub fn ignored(ctx: &TcContext, family: u8, sport: u16, dport: u16) {
    debug!(
        ctx,
        target: KERNEL_TRACE_TARGET,
        "IPv{} TCP {} -> {}: no watched port, not tapped",
        family,
        sport,
        dport
    );
}

/// A segment of a watched port, about to be copied (bare ACKs are then skipped).
#[inline(always)]
pub fn segment(
    ctx: &TcContext,
    direction: u8,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload_len: u32,
) {
    // Arguments are evaluated only once the level check passed: keep work out of this body.
    debug!(
        ctx,
        target: KERNEL_TRACE_TARGET,
        "TCP {} -> {} {}: seq {} flags 0x{:x}, {} payload bytes",
        sport,
        dport,
        if direction == DIR_REQUEST {
            "request"
        } else {
            "response"
        },
        seq,
        flags,
        payload_len
    );
}

/// A packet's headers or payload could not be read (counted as malformed).
#[inline(always)]
pub fn malformed(ctx: &TcContext) {
    debug!(
        ctx,
        target: KERNEL_TRACE_TARGET,
        "packet of {} bytes not tapped: headers unreadable (counted as malformed)",
        ctx.len()
    );
}
