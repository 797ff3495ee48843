//! eBPF capture source: loads the embedded TC classifier, attaches it and reads the ring.

/// The eBPF object built by `build.rs` from `shadow-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shadow-ebpf"));
