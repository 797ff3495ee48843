//! Loading the embedded eBPF object and attaching its classifier to an interface: TCX on
//! kernels ≥ 6.6 (links that die with their file descriptors), a netlink `clsact` filter before
//! (which outlives a killed daemon: the next start removes stale filters of the same name).
//! Detaching is dropping the [`AttachedTap`].

use crate::capture::live::TapSpec;
use crate::error::CaptureError;
use aya::maps::{Array as BpfArray, MapData, PerCpuArray, RingBuf};
use aya::programs::{SchedClassifier, TcAttachType, tc};
use aya::util::KernelVersion;
use aya::{Btf, Ebpf, EbpfLoader};

/// The eBPF object built by `build.rs` from `shadow-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shadow-ebpf"));

/// Name of the classifier function in the object.
pub const PROGRAM_NAME: &str = "shadow_tap";

/// Environment variable forcing the attachment mode: `netlink` (clsact filter, as on kernels
/// before 6.6) or `tcx`. Default: TCX where the kernel has it.
pub const ATTACH_MODE_ENV: &str = "SHADOWTAP_TC_ATTACH";

/// The segment ring in the object.
const EVENTS_MAP: &str = "EVENTS";

/// aya-log's ring buffer in the object; shrunk to one page when the kernel trace is off.
const LOG_MAP: &str = "AYA_LOGS";

/// The program's global holding the link-layer header length in front of IP (a frozen
/// read-only value, set at load: see [`super::link`]).
const L2_HEADER_LEN: &str = "L2_HEADER_LEN";

/// How the tap is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Turns on the kernel-side trace: one `debug` line per TCP packet the program looks at,
    /// logged with target `shadowtap::ebpf`. Off, it costs nothing per packet.
    pub kernel_trace: bool,
    /// Bytes of the segment ring (`capture.ring_bytes`: a power of two, whole pages); `None`:
    /// the object's own, `shadow_common::RING_BYTES`.
    pub ring_bytes: Option<u32>,
}

impl Options {
    /// The trace is on when the log filter enables `shadowtap::ebpf` at `debug` (e.g.
    /// `--log info,shadowtap::ebpf=debug` or `SHADOWD_LOG`).
    pub fn from_log_filter() -> Self {
        Options {
            kernel_trace: tracing::enabled!(
                target: shadow_common::KERNEL_TRACE_TARGET,
                tracing::Level::DEBUG
            ),
            ring_bytes: None,
        }
    }
}

/// The loaded program, attached: dropping it detaches the tap (TCX links close with their file
/// descriptors; netlink filters are removed by the next start).
pub struct AttachedTap {
    /// Owns the program, its links and the maps not taken out below.
    pub ebpf: Ebpf,
    /// Segment records (see `shadow_common::SegmentEvent`).
    pub ring: RingBuf<MapData>,
    /// Per-CPU counters indexed by `shadow_common::counter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// Moves the kernel-side trace into `tracing` (present only when the trace is on).
    pub trace: Option<KernelTrace>,
    /// Where it is attached.
    pub attachment: Attachment,
}

/// Where a tap is attached: what re-attaching it to a re-created interface needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The interface's name.
    pub iface: String,
    /// Its index when the tap was (last) attached.
    pub ifindex: u32,
    /// The link-layer header length the program was loaded for.
    pub l2_header_len: u32,
    /// TCX links (else netlink clsact filters).
    pub tcx: bool,
}

/// The kernel-side trace reader: aya-log's logger, drained by the reader thread.
pub struct KernelTrace(Box<dyn FnMut() + Send>);

impl KernelTrace {
    /// Hands every trace record written so far to `log` (and so to `tracing`).
    pub fn flush(&mut self) {
        (self.0)()
    }
}

/// Loads the program for `spec.ports` and attaches it to `spec.interface`.
pub fn attach(spec: &TapSpec, options: Options) -> Result<AttachedTap, CaptureError> {
    if EBPF_OBJECT.is_empty() {
        return Err(CaptureError::NoEbpfObject);
    }
    let l2_header_len = super::link::of_interface(&spec.interface)?;
    raise_memlock_limit();
    let mut ebpf = load_object(options, l2_header_len)?;
    let trace = if options.kernel_trace {
        let mut logger = aya_log::EbpfLogger::init(&mut ebpf)
            .map_err(|e| CaptureError::load("opening the kernel trace", e))?;
        Some(KernelTrace(Box::new(move || logger.flush())))
    } else {
        None
    };
    watch_ports(&mut ebpf, &spec.ports)?;
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(CaptureError::IncompleteObject(PROGRAM_NAME))?
        .try_into()
        .map_err(|e| CaptureError::load("reading the classifier", e))?;
    program
        .load()
        .map_err(|e| CaptureError::load("loading the classifier", e))?;

    let ifindex = spec.resolve()?;
    let tcx = use_tcx();
    for &hook in hooks_for(&spec.interface) {
        attach_hook(program, &spec.interface, hook, tcx)?;
    }
    tracing::info!(
        iface = %spec.interface,
        ports = ?spec.ports,
        mode = if tcx { "tcx" } else { "netlink clsact" },
        l2_header_len,
        kernel_trace = options.kernel_trace,
        ring_bytes = options.ring_bytes.unwrap_or(shadow_common::RING_BYTES),
        "eBPF tap attached"
    );

    let ring = RingBuf::try_from(
        ebpf.take_map(EVENTS_MAP)
            .ok_or(CaptureError::IncompleteObject(EVENTS_MAP))?,
    )
    .map_err(|e| CaptureError::load("opening the EVENTS ring", e))?;
    let counters = PerCpuArray::try_from(
        ebpf.take_map("COUNTERS")
            .ok_or(CaptureError::IncompleteObject("COUNTERS"))?,
    )
    .map_err(|e| CaptureError::load("opening the COUNTERS map", e))?;
    Ok(AttachedTap {
        ebpf,
        ring,
        counters,
        trace,
        attachment: Attachment {
            iface: spec.interface.clone(),
            ifindex,
            l2_header_len,
            tcx,
        },
    })
}

/// Attaches the loaded classifier to `attachment.iface` again, now at `ifindex`: the interface
/// was deleted (its TCX links or tc filters went with it) and one of the same name created.
/// Refused when the new interface's link-layer header is not the one the program was loaded
/// for (the program would read every packet wrong).
pub fn reattach(
    ebpf: &mut Ebpf,
    attachment: &mut Attachment,
    ifindex: u32,
) -> Result<(), CaptureError> {
    let iface = attachment.iface.clone();
    let l2_header_len = super::link::of_interface(&iface)?;
    if l2_header_len != attachment.l2_header_len {
        return Err(CaptureError::attach(
            &iface,
            format!(
                "re-attaching: the re-created interface has a {l2_header_len}-byte link header, \
                 the tap was loaded for {} (restart shadowd)",
                attachment.l2_header_len
            ),
            std::io::Error::other("the link type changed"),
        ));
    }
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(CaptureError::IncompleteObject(PROGRAM_NAME))?
        .try_into()
        .map_err(|e| CaptureError::load("reading the classifier", e))?;
    for &hook in hooks_for(&iface) {
        attach_hook(program, &iface, hook, attachment.tcx)?;
    }
    attachment.ifindex = ifindex;
    Ok(())
}

/// Parses the object and creates its maps. aya-log's level (a frozen read-only global the
/// program checks before each trace line) is always set: to `debug` for the trace, else to 0,
/// which lets the verifier drop the trace code; the trace's ring then shrinks to one page.
/// The link-layer header length is another such global. The segment ring is sized as
/// `options.ring_bytes` says.
fn load_object(options: Options, l2_header_len: u32) -> Result<Ebpf, CaptureError> {
    let kernel_trace = options.kernel_trace;
    let level = if kernel_trace {
        aya_log::Level::Debug as u8
    } else {
        0
    };
    let btf = Btf::from_sys_fs().ok();
    let mut loader = EbpfLoader::new();
    loader
        .btf(btf.as_ref())
        .override_global(aya_log::LEVEL, &level, true)
        .override_global(L2_HEADER_LEN, &l2_header_len, true);
    if !kernel_trace {
        loader.map_max_entries(LOG_MAP, page_size());
    }
    if let Some(bytes) = options.ring_bytes {
        loader.map_max_entries(EVENTS_MAP, bytes);
    }
    loader
        .load(EBPF_OBJECT)
        .map_err(|e| CaptureError::load("creating the maps", e))
}

/// Writes the watched ports into the `PORTS` map.
fn watch_ports(ebpf: &mut Ebpf, ports: &[u16]) -> Result<(), CaptureError> {
    let mut map: BpfArray<_, u8> = BpfArray::try_from(
        ebpf.map_mut("PORTS")
            .ok_or(CaptureError::IncompleteObject("PORTS"))?,
    )
    .map_err(|e| CaptureError::load("opening the PORTS map", e))?;
    for &port in ports {
        map.set(u32::from(port), 1, 0)
            .map_err(|e| CaptureError::load("writing the watched ports", e))?;
    }
    Ok(())
}

/// Attaches `program` to one hook of `iface`, first removing a stale netlink filter of ours.
fn attach_hook(
    program: &mut SchedClassifier,
    iface: &str,
    hook: TcAttachType,
    tcx: bool,
) -> Result<(), CaptureError> {
    // Netlink filters outlive a killed daemon: remove any stale one of ours first.
    match tc::qdisc_detach_program(iface, hook, PROGRAM_NAME) {
        Ok(()) => tracing::warn!(iface, ?hook, "removed a stale shadowtap tc filter"),
        Err(e) => tracing::trace!("no stale filter: {e}"),
    }
    if !tcx {
        // "File exists" when a clsact qdisc is already there: fine; a real problem shows in
        // the attach below.
        if let Err(e) = tc::qdisc_add_clsact(iface) {
            tracing::trace!("clsact qdisc not added: {e}");
        }
    }
    let options = if tcx {
        tc::TcAttachOptions::TcxOrder(aya::programs::LinkOrder::default())
    } else {
        tc::TcAttachOptions::Netlink(tc::NlOptions::default())
    };
    program
        .attach_with_options(iface, hook, options)
        .map(drop)
        .map_err(|e| CaptureError::attach(iface, format!("attaching to the {hook:?} hook"), e))
}

fn use_tcx() -> bool {
    match std::env::var(ATTACH_MODE_ENV).as_deref() {
        Ok("netlink") => false,
        Ok("tcx") => true,
        _ => KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)),
    }
}

/// `lo` carries every packet through egress and then ingress: tap ingress only there. On a
/// NIC requests arrive on ingress and responses leave on egress.
fn hooks_for(interface: &str) -> &'static [TcAttachType] {
    if interface == "lo" {
        &[TcAttachType::Ingress]
    } else {
        &[TcAttachType::Ingress, TcAttachType::Egress]
    }
}

/// Older kernels charge BPF maps to RLIMIT_MEMLOCK; newer ones use memcg. Failing to raise
/// it is not fatal (it fails on some VMs where loading works anyway).
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "cannot raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_object_holds_the_program_maps_and_trace_level() {
        let mut obj = aya_obj::Object::parse(EBPF_OBJECT).expect("valid ELF");
        assert!(obj.programs.contains_key(PROGRAM_NAME));
        for map in ["PORTS", EVENTS_MAP, "COUNTERS", LOG_MAP] {
            assert!(obj.maps.contains_key(map), "{map}");
        }
        // The globals `load_object` always sets (they must exist, or loading fails).
        let level = std::collections::HashMap::from([(aya_log::LEVEL, (&[0u8][..], true))]);
        obj.patch_map_data(level)
            .expect("the trace level global is in the object");
        let l2 = 0u32.to_ne_bytes();
        let l2 = std::collections::HashMap::from([(L2_HEADER_LEN, (&l2[..], true))]);
        obj.patch_map_data(l2)
            .expect("the link-layer header length global is in the object");
    }
}
