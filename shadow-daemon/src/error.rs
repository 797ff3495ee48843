//! Errors of the capture boundary, and the [`ExitClass`] every daemon error type implements.
//! Errors say which side failed and what to do, keep their cause as their `source()`, and know
//! whether the user's input caused them (which picks the exit code in [`crate::commands`]).

use std::error::Error;
use std::io;

/// The cause of a failed step, as aya or the kernel reported it (type-erased so that one
/// variant can carry aya's `EbpfError`, `ProgramError`, `MapError` or an `io::Error`; the
/// concrete type stays reachable with `downcast_ref`).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Whether an error was caused by the user's input (flags, config file, interface or file
/// names): such errors exit with code 2, all others with 1.
pub trait ExitClass {
    /// True when the user can fix it by changing the input.
    fn is_usage(&self) -> bool;
}

/// Failures of a live capture source (eBPF tap or AF_PACKET socket).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Loading eBPF or opening a raw socket needs privileges.
    #[error(
        "capture needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON (AF_PACKET: CAP_NET_RAW); \
         run with sudo or grant those capabilities"
    )]
    NotPermitted {
        /// The refused operation.
        #[source]
        source: Cause,
    },
    /// The interface name does not exist on this host (in this network namespace).
    #[error("unknown interface `{name}` (pick one that `ip link` lists)")]
    UnknownInterface {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The eBPF tap cannot read this interface's link type (see `capture::ebpf::link`).
    #[error(
        "`{iface}` has link type {name} ({link_type}), which the eBPF tap does not read (it \
         reads Ethernet-like devices and loopback, and layer-3 devices without a link header \
         such as tun and WireGuard): tap another interface, or use --capture afpacket, which \
         reads any link type"
    )]
    UnsupportedLinkType {
        iface: String,
        /// Its `ARPHRD_*` number.
        link_type: u16,
        /// Its `ARPHRD_*` name.
        name: &'static str,
    },
    /// No port, or port 0.
    #[error("invalid port {0}: give the production model server's TCP port (1-65535)")]
    InvalidPort(u16),
    /// More ports than the kernel-side map holds.
    #[error("too many ports ({0}); at most {max}", max = shadow_common::MAX_PORTS)]
    TooManyPorts(usize),
    /// This binary was built without the eBPF object.
    #[error(
        "this shadowd was built with AYA_BUILD_SKIP=1 and has no eBPF tap: use --capture afpacket, \
         or rebuild after `cargo xtask bootstrap`"
    )]
    NoEbpfObject,
    /// The embedded eBPF object lacks a program or map the daemon needs.
    #[error(
        "the embedded eBPF object has no `{0}`: shadowd and shadow-ebpf are out of step; rebuild shadowd"
    )]
    IncompleteObject(&'static str),
    /// Loading or verifying the eBPF program (or one of its maps) failed.
    #[error(
        "loading the eBPF tap failed while {step} (it needs Linux ≥ 5.8 with BPF ring buffers and \
         TC classifiers; elsewhere use --capture afpacket)"
    )]
    Load {
        /// What was being done, e.g. "loading the classifier".
        step: &'static str,
        #[source]
        source: Cause,
    },
    /// Attaching the tap to the interface failed.
    #[error(
        "attaching the tap to `{iface}` failed while {step} (is the interface up? on kernels \
         before 6.6 try SHADOWTAP_TC_ATTACH=netlink; or use --capture afpacket)"
    )]
    Attach {
        iface: String,
        /// What was being done, e.g. "attaching to the Ingress hook".
        step: String,
        #[source]
        source: Cause,
    },
    /// Setting up the AF_PACKET socket failed.
    #[error("setting up the AF_PACKET socket on `{iface}` failed while {step}")]
    Socket {
        iface: String,
        /// What was being done, e.g. "setting SO_RCVBUF".
        step: String,
        #[source]
        source: io::Error,
    },
    /// The capture could not be started (socket, reader thread).
    #[error("the capture could not {step}")]
    Io {
        /// What was being done, e.g. "start its reader thread".
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    /// A failed loading step: [`CaptureError::NotPermitted`] when the kernel refused for lack
    /// of privileges (see [`lacks_privileges`]), [`CaptureError::Load`] otherwise.
    pub fn load(step: &'static str, source: impl Into<Cause>) -> Self {
        Self::unless_refused(source.into(), |source| CaptureError::Load { step, source })
    }

    /// A failed attaching step, classified like [`CaptureError::load`].
    pub fn attach(iface: &str, step: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::unless_refused(source.into(), |source| CaptureError::Attach {
            iface: iface.to_owned(),
            step: step.into(),
            source,
        })
    }

    /// A failed AF_PACKET socket step, classified like [`CaptureError::load`].
    pub fn socket(iface: &str, step: impl Into<String>, source: io::Error) -> Self {
        if lacks_privileges(&source) {
            return CaptureError::NotPermitted {
                source: source.into(),
            };
        }
        CaptureError::Socket {
            iface: iface.to_owned(),
            step: step.into(),
            source,
        }
    }

    fn unless_refused(source: Cause, otherwise: impl FnOnce(Cause) -> Self) -> Self {
        if lacks_privileges(&*source) {
            CaptureError::NotPermitted { source }
        } else {
            otherwise(source)
        }
    }
}

impl ExitClass for CaptureError {
    fn is_usage(&self) -> bool {
        matches!(
            self,
            CaptureError::UnknownInterface { .. }
                | CaptureError::UnsupportedLinkType { .. }
                | CaptureError::InvalidPort(_)
                | CaptureError::TooManyPorts(_)
        )
    }
}

/// Whether the kernel refused `err` (or one of its causes) for lack of privileges: an
/// `io::Error` or `nix` errno of `EPERM`, or `EACCES` outside a program load (the verifier
/// answers `EACCES` for programs it rejects, which is not a question of privileges).
pub fn lacks_privileges(err: &(dyn Error + 'static)) -> bool {
    let chain = || std::iter::successors(Some(err), |&e| e.source());
    let verifier_rejected = chain().any(|e| {
        matches!(
            e.downcast_ref::<aya::programs::ProgramError>(),
            Some(aya::programs::ProgramError::LoadError { .. })
        )
    });
    chain().any(|e| {
        let errno = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .or_else(|| e.downcast_ref::<nix::errno::Errno>().map(|&n| n as i32));
        match errno {
            Some(libc::EPERM) => true,
            Some(libc::EACCES) => !verifier_rejected,
            _ => false,
        }
    })
}

/// Capture files: missing, unreadable or not a capture are the user's to fix; a failed write
/// (disk full) is not.
impl ExitClass for shadow_core::pcap::PcapError {
    fn is_usage(&self) -> bool {
        !matches!(self, shadow_core::pcap::PcapError::Write { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::programs::ProgramError;

    fn syscall(errno: i32) -> ProgramError {
        ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_prog_attach",
            io_error: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn missing_privileges_are_found_in_the_source_chain() {
        assert!(matches!(
            CaptureError::load("creating maps", syscall(libc::EPERM)),
            CaptureError::NotPermitted { .. }
        ));
        assert!(matches!(
            CaptureError::attach("eth0", "attaching", syscall(libc::EACCES)),
            CaptureError::NotPermitted { .. }
        ));
        assert!(lacks_privileges(&nix::errno::Errno::EPERM));
        let other = CaptureError::load("creating maps", syscall(libc::EINVAL));
        assert!(matches!(other, CaptureError::Load { .. }));
        // The cause stays reachable, typed.
        let source = other.source().expect("a source");
        assert!(source.downcast_ref::<ProgramError>().is_some());
        assert_eq!(
            std::iter::successors(Some(source), |&e| e.source())
                .find_map(|e| e.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn a_verifier_rejection_is_not_a_privilege_problem() {
        let rejected = ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        };
        assert!(!lacks_privileges(&rejected));
        let refused = ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(libc::EPERM),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        };
        assert!(lacks_privileges(&refused));
    }
}
