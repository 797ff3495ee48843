//! shadowtap's kernel side: a TC classifier that copies every TCP segment to or from a watched
//! production port into a ring buffer, and always lets the packet continue untouched.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod trace;

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};

/// Classifier entry point. Whatever happens inside, the packet continues (`TC_ACT_UNSPEC`, the
/// "no opinion" verdict that lets the next program or the default action decide): the tap never
/// drops, redirects or modifies a packet.
#[classifier]
pub fn shadow_tap(ctx: TcContext) -> i32 {
    parse::try_tap(&ctx);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
