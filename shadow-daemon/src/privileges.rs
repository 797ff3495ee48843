//! Least privilege: the capabilities shadowd holds, and dropping every one of them once the tap
//! is attached, so that the replay client, the JSON and protobuf parsers, the admin server and
//! any rollback command never run privileged.
//!
//! What needs which capability (nothing else does):
//!
//! | step                                   | capabilities                                |
//! |----------------------------------------|---------------------------------------------|
//! | load the eBPF program, create its maps | `CAP_BPF`, `CAP_PERFMON` (ring buffer, BTF)  |
//! | attach it to the interface (TCX/tc)    | `CAP_NET_ADMIN` (with `CAP_BPF`)             |
//! | open the AF_PACKET socket (afpacket)   | `CAP_NET_RAW`                                |
//! | drop the bounding set afterwards       | `CAP_SETPCAP`                                |
//! | raise RLIMIT_MEMLOCK (kernels < 5.11)  | `CAP_SYS_RESOURCE` (none under the unit's    |
//! |                                        | `LimitMEMLOCK=infinity`)                     |
//!
//! Reading the attached tap needs none: the ring buffer is memory-mapped, TCX links are released
//! by closing their file descriptors, an AF_PACKET socket reads without privileges once open.
//!
//! Capabilities belong to threads on Linux: [`drop_all`] empties the calling thread's sets, and
//! threads it starts afterwards inherit the empty sets. Threads started before the drop (the
//! capture's reader, the discrepancy log's writer) call [`drop_all`] themselves when they
//! start, once [`announce_drop`] said the process will drop: they never need a capability.
//! (Without the announcement — `shadowd record`, which keeps its capabilities — the capture's
//! reader keeps them too: it is the thread that detaches a netlink `clsact` filter at the end.)

use caps::CapSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the process drops its capabilities once the tap is attached.
static DROP_ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// Says that the process will drop every capability once its tap is attached: helper threads
/// started from now on drop theirs when they start ([`drop_in_helper_thread`]).
pub fn announce_drop() {
    DROP_ANNOUNCED.store(true, Ordering::Relaxed);
}

/// Whether [`announce_drop`] was called.
pub fn drop_announced() -> bool {
    DROP_ANNOUNCED.load(Ordering::Relaxed)
}

/// Why the capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot drop the {set} capability set ({source}); shadowd refuses to keep running \
     privileged: check that nothing (a seccomp filter, an LSM) forbids capset(2) and \
     prctl(PR_CAPBSET_DROP)"
)]
pub struct PrivilegeError {
    /// The set that could not be emptied.
    set: &'static str,
    #[source]
    source: caps::errors::CapsError,
}

/// The calling thread's capability sets, as `/proc/PID/status` shows them (hexadecimal masks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    /// `CapEff`.
    pub effective: u64,
    /// `CapPrm`.
    pub permitted: u64,
    /// `CapInh`.
    pub inheritable: u64,
    /// `CapBnd`.
    pub bounding: u64,
    /// `CapAmb`.
    pub ambient: u64,
}

impl CapSets {
    /// The calling thread's sets (all zero if `/proc/thread-self/status` cannot be read).
    pub fn of_this_thread() -> CapSets {
        std::fs::read_to_string("/proc/thread-self/status")
            .map(|text| CapSets::parse(&text))
            .unwrap_or_default()
    }

    /// The `Cap*` lines of a `/proc/PID/status` text (a missing or garbled line reads as 0).
    pub fn parse(status: &str) -> CapSets {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        CapSets {
            effective: field("CapEff"),
            permitted: field("CapPrm"),
            inheritable: field("CapInh"),
            bounding: field("CapBnd"),
            ambient: field("CapAmb"),
        }
    }

    /// Whether every set is empty.
    pub fn is_empty(&self) -> bool {
        *self == CapSets::default()
    }
}

/// Empties the calling thread's capability sets: bounding (when `CAP_SETPCAP` allows it; a
/// thread without it cannot gain anything from its bounding set either, having no permitted
/// capabilities after this), ambient, inheritable, effective and permitted. Irreversible.
pub fn drop_all() -> Result<CapSets, PrivilegeError> {
    let fail = |set| move |source| PrivilegeError { set, source };
    let may_shrink_bounding =
        caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false);
    if may_shrink_bounding {
        caps::clear(None, CapSet::Bounding).map_err(fail("bounding"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(fail("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(fail("inheritable"))?;
    // Permitted last (clearing it clears the effective set too).
    caps::clear(None, CapSet::Permitted).map_err(fail("permitted"))?;
    Ok(CapSets::of_this_thread())
}

/// [`drop_all`] for a helper thread that never needs a capability, at its start, if the process
/// [announced](announce_drop) the drop: a failure is logged (the thread is not the one that
/// attaches, and the main thread's drop reports it).
pub fn drop_in_helper_thread(name: &str) {
    if !drop_announced() {
        return;
    }
    if let Err(e) = drop_all() {
        tracing::warn!(thread = name, "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_as_hexadecimal_masks() {
        let text = "Name:\tshadowd\nCapInh:\t0000000000000000\nCapPrm:\t000001c000003000\n\
                    CapEff:\t000001c000003000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let sets = CapSets::parse(text);
        assert_eq!(sets.permitted, 0x1c0_0000_3000);
        assert_eq!(sets.effective, 0x1c0_0000_3000);
        assert_eq!(sets.bounding, 0x1ff_ffff_ffff);
        assert!(!sets.is_empty());
        assert!(CapSets::parse("Name:\tx\n").is_empty());
    }

    #[test]
    fn a_dropping_thread_ends_with_no_effective_or_permitted_capability() {
        // In a thread of its own: the sets of the test runner's other threads are untouched.
        let sets = std::thread::spawn(|| drop_all().unwrap()).join().unwrap();
        assert_eq!((sets.effective, sets.permitted, sets.ambient), (0, 0, 0));
        assert_eq!(sets.inheritable, 0);
    }
}
