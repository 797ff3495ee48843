//! The eBPF program is this crate's binary target (`src/main.rs`), built for `bpfel-unknown-none`
//! by the daemon's `build.rs`. This empty library only lets the daemon declare the crate as a
//! build dependency, so that cargo rebuilds the daemon when the program changes.
#![no_std]
