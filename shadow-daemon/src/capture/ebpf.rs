//! eBPF capture source: loads the embedded TC classifier, attaches it to the interface (TCX on
//! kernels ≥ 6.6, netlink clsact before) and reads segment records from the ring buffer.
//!
//! The reader is one dedicated thread that owns the loaded program: when the [`LiveCapture`]
//! is dropped or shutdown is requested, the thread exits, the links close and the tap is gone.
//! A killed daemon leaves nothing behind with TCX (links die with their file descriptors); with
//! the netlink fallback the next start removes stale filters of the same name.

use super::chunks::ChunkJoiner;
use super::{LIVE_CHANNEL_DEPTH, LiveCapture, SharedStats, TapSpec};
use crate::error::CaptureError;
use crate::shutdown::Shutdown;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{SchedClassifier, TcAttachType, tc};
use aya::util::KernelVersion;
use bytes::Bytes;
use shadow_common::{FAMILY_IPV4, SEGMENT_EVENT_SIZE, SegmentEvent, counter};
use shadow_core::segment::{Direction, FlowKey, Segment, TcpFlags};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The eBPF object built by `build.rs` from `shadow-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shadow-ebpf"));

/// Name of the classifier function in the object.
pub const PROGRAM_NAME: &str = "shadow_tap";

/// How often the reader drains the ring. The kernel side submits without a wakeup until the ring
/// is an eighth full, so this timer is what normally collects records (a few ms of delay, far
/// fewer context switches next to production).
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How often the kernel-side counters are read.
const COUNTERS_INTERVAL: Duration = Duration::from_millis(200);

/// Loads and attaches the tap described by `spec` and starts reading it.
pub fn open(spec: &TapSpec, shutdown: Shutdown) -> Result<LiveCapture, CaptureError> {
    spec.validate()?;
    if nix::net::if_::if_nametoindex(spec.interface.as_str()).is_err() {
        return Err(CaptureError::UnknownInterface(spec.interface.clone()));
    }
    if EBPF_OBJECT.is_empty() {
        return Err(CaptureError::Load(
            "this shadowd was built with AYA_BUILD_SKIP=1 and has no eBPF tap; use --capture afpacket".into(),
        ));
    }
    raise_memlock_limit();

    let mut ebpf = aya::Ebpf::load(EBPF_OBJECT).map_err(|e| load_error(e.to_string(), &e))?;
    if let Err(e) = aya_log::EbpfLogger::init(&mut ebpf) {
        // The program logs nothing on the hot path; a missing logger only loses debug output.
        tracing::debug!("eBPF logger not initialised: {e}");
    }
    {
        let mut ports: BpfHashMap<_, u16, u8> =
            BpfHashMap::try_from(ebpf.map_mut("PORTS").ok_or_else(|| missing("PORTS"))?)
                .map_err(|e| CaptureError::Load(e.to_string()))?;
        for &port in &spec.ports {
            ports
                .insert(port, 1, 0)
                .map_err(|e| CaptureError::Load(e.to_string()))?;
        }
    }
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| missing(PROGRAM_NAME))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| CaptureError::Load(e.to_string()))?;
    program
        .load()
        .map_err(|e| load_error(format!("{e:#}"), &e))?;

    let tcx = use_tcx();
    for &hook in hooks_for(&spec.interface) {
        // Netlink filters outlive a killed daemon: remove any stale one of ours first.
        match tc::qdisc_detach_program(&spec.interface, hook, PROGRAM_NAME) {
            Ok(()) => {
                tracing::warn!(iface = %spec.interface, ?hook, "removed a stale shadowtap tc filter")
            }
            Err(e) => tracing::trace!("no stale filter: {e}"),
        }
        if !tcx {
            // "File exists" when a clsact qdisc is already there: fine.
            let _ = tc::qdisc_add_clsact(&spec.interface);
        }
        let options = if tcx {
            tc::TcAttachOptions::TcxOrder(aya::programs::LinkOrder::default())
        } else {
            tc::TcAttachOptions::Netlink(tc::NlOptions::default())
        };
        program
            .attach_with_options(&spec.interface, hook, options)
            .map_err(|e| CaptureError::Attach {
                iface: spec.interface.clone(),
                reason: format!("{hook:?}: {e}"),
            })?;
    }
    tracing::info!(
        iface = %spec.interface,
        ports = ?spec.ports,
        mode = if tcx { "tcx" } else { "netlink clsact" },
        "eBPF tap attached"
    );

    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").ok_or_else(|| missing("EVENTS"))?)
        .map_err(|e| CaptureError::Load(e.to_string()))?;
    let counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
        ebpf.take_map("COUNTERS")
            .ok_or_else(|| missing("COUNTERS"))?,
    )
    .map_err(|e| CaptureError::Load(e.to_string()))?;

    let (tx, rx) = mpsc::channel(LIVE_CHANNEL_DEPTH);
    let stats = Arc::new(SharedStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = RingReader {
        ring,
        counters,
        tx,
        stats: stats.clone(),
        stop: stop.clone(),
        shutdown,
        clock_offset_ns: realtime_minus_monotonic_ns(),
        channel_full: 0,
        joiner: ChunkJoiner::default(),
        ready: Vec::new(),
    };
    let thread = std::thread::Builder::new()
        .name("shadowtap-ring".into())
        .spawn(move || {
            reader.run();
            // Dropping the program here detaches the tap (TCX links close with their fds).
            drop(ebpf);
        })
        .map_err(CaptureError::Read)?;
    Ok(LiveCapture {
        segments: rx,
        stats,
        _guard: Box::new(ReaderGuard {
            stop,
            thread: Some(thread),
        }),
    })
}

/// Environment variable forcing the attachment mode: `netlink` (clsact filter, as on kernels
/// before 6.6) or `tcx`. Default: TCX where the kernel has it.
pub const ATTACH_MODE_ENV: &str = "SHADOWTAP_TC_ATTACH";

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

fn missing(what: &str) -> CaptureError {
    CaptureError::Load(format!("`{what}` missing from the embedded eBPF object"))
}

fn load_error(message: String, err: &(dyn std::error::Error + 'static)) -> CaptureError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::EPERM)
        {
            return CaptureError::NotPermitted;
        }
        source = e.source();
    }
    if message.contains("Operation not permitted")
        || !nix::unistd::geteuid().is_root() && message.contains("EPERM")
    {
        return CaptureError::NotPermitted;
    }
    CaptureError::Load(message)
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

/// CLOCK_REALTIME − CLOCK_MONOTONIC, to turn `bpf_ktime_get_ns` into Unix time.
fn realtime_minus_monotonic_ns() -> i128 {
    fn now(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer, valid clock id.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    }
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}

/// Stops and joins the reader thread when the capture is dropped.
struct ReaderGuard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct RingReader {
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    tx: mpsc::Sender<Segment>,
    stats: Arc<SharedStats>,
    stop: Arc<AtomicBool>,
    shutdown: Shutdown,
    clock_offset_ns: i128,
    /// Records dropped because the daemon's channel was full.
    channel_full: u64,
    joiner: ChunkJoiner,
    /// Completed segments waiting to be handed over.
    ready: Vec<Segment>,
}

impl RingReader {
    fn run(mut self) {
        let fd = self.ring.as_fd().as_raw_fd();
        let mut last_counters = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed)
                || self.shutdown.is_requested()
                || self.tx.is_closed()
            {
                break;
            }
            let mut pollfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pollfd, 1, POLL_INTERVAL.as_millis() as i32) };
            if ready < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("polling the eBPF ring failed: {err}");
                    break;
                }
            }
            self.drain();
            if last_counters.elapsed() >= COUNTERS_INTERVAL {
                self.read_counters();
                last_counters = Instant::now();
            }
        }
        // Whatever is still in the ring was captured: deliver it before leaving.
        self.drain();
        self.joiner.flush(&mut self.ready);
        self.deliver();
        self.read_counters();
    }

    fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            match split_record(&item) {
                Some((event, payload)) => {
                    self.joiner
                        .push(&event, payload, self.clock_offset_ns, &mut self.ready)
                }
                None => tracing::warn!(len = item.len(), "malformed ring record skipped"),
            }
            drop(item);
            deliver(
                &mut self.ready,
                &self.tx,
                &self.stats,
                &mut self.channel_full,
            );
        }
        self.joiner.end_round(&mut self.ready);
        self.deliver();
    }

    fn deliver(&mut self) {
        deliver(
            &mut self.ready,
            &self.tx,
            &self.stats,
            &mut self.channel_full,
        );
    }
    fn read_counters(&mut self) {
        let sum = |index: u32| -> u64 {
            self.counters
                .get(&index, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0)
        };
        let kernel_dropped = sum(counter::RING_FULL);
        self.stats
            .dropped
            .store(kernel_dropped + self.channel_full, Ordering::Relaxed);
        self.stats
            .truncated
            .store(sum(counter::TOO_LONG), Ordering::Relaxed);
    }
}

/// Hands completed segments to the daemon, never waiting: a full channel drops and counts.
fn deliver(
    ready: &mut Vec<Segment>,
    tx: &mpsc::Sender<Segment>,
    stats: &SharedStats,
    channel_full: &mut u64,
) {
    for segment in ready.drain(..) {
        let len = segment.payload.len();
        match tx.try_send(segment) {
            Ok(()) => stats.delivered(len),
            Err(_) => *channel_full += 1,
        }
    }
}

/// Splits one ring record into its header and payload chunk.
fn split_record(bytes: &[u8]) -> Option<(SegmentEvent, &[u8])> {
    if bytes.len() < SEGMENT_EVENT_SIZE {
        return None;
    }
    // SAFETY: length checked; SegmentEvent is plain old data, read unaligned.
    let event: SegmentEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let payload = bytes.get(SEGMENT_EVENT_SIZE..SEGMENT_EVENT_SIZE + event.chunk_len as usize)?;
    Some((event, payload))
}

#[cfg(test)]
fn parse_record(bytes: &[u8], clock_offset_ns: i128) -> Option<Segment> {
    split_record(bytes).map(|(event, payload)| segment_from_event(&event, payload, clock_offset_ns))
}

/// Builds a [`Segment`] from a decoded record header and its payload chunk.
pub fn segment_from_event(event: &SegmentEvent, payload: &[u8], clock_offset_ns: i128) -> Segment {
    let ip = |raw: [u8; 16]| -> IpAddr {
        if event.family == FAMILY_IPV4 {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(raw))
        }
    };
    let src = SocketAddr::new(ip(event.saddr), event.sport);
    let dst = SocketAddr::new(ip(event.daddr), event.dport);
    let (dir, flow) = if event.direction == shadow_common::DIR_REQUEST {
        (
            Direction::Request,
            FlowKey {
                client: src,
                server: dst,
            },
        )
    } else {
        (
            Direction::Response,
            FlowKey {
                client: dst,
                server: src,
            },
        )
    };
    Segment {
        flow,
        dir,
        seq: event.seq,
        ack: event.ack,
        flags: TcpFlags(event.tcp_flags),
        ts_ns: (event.ts_ns as i128 + clock_offset_ns).max(0) as u64,
        payload: Bytes::copy_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_common::{DIR_RESPONSE, FAMILY_IPV6};

    fn record(event: &SegmentEvent, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; SEGMENT_EVENT_SIZE];
        // SAFETY: buffer is exactly the size of the header.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), *event) };
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn ipv4_request_record() {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let event = SegmentEvent {
            ts_ns: 1_000,
            saddr,
            daddr,
            sport: 40000,
            dport: 8080,
            family: FAMILY_IPV4,
            direction: shadow_common::DIR_REQUEST,
            tcp_flags: TcpFlags::ACK | TcpFlags::PSH,
            seq: 123,
            ack: 456,
            segment_len: 5,
            chunk_len: 5,
            ..Default::default()
        };
        let seg = parse_record(&record(&event, b"hello"), 5_000).unwrap();
        assert_eq!(seg.flow.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.flow.server, "10.0.0.2:8080".parse().unwrap());
        assert_eq!(seg.dir, Direction::Request);
        assert_eq!((seg.seq, seg.ack, seg.ts_ns), (123, 456, 6_000));
        assert_eq!(seg.payload, "hello");
    }

    #[test]
    fn ipv6_response_record_names_the_flow_from_the_client() {
        let server: Ipv6Addr = "fd00::1".parse().unwrap();
        let client: Ipv6Addr = "fd00::2".parse().unwrap();
        let event = SegmentEvent {
            saddr: server.octets(),
            daddr: client.octets(),
            sport: 8080,
            dport: 50000,
            family: FAMILY_IPV6,
            direction: DIR_RESPONSE,
            chunk_len: 0,
            ..Default::default()
        };
        let seg = parse_record(&record(&event, b""), 0).unwrap();
        assert_eq!(seg.flow.client, "[fd00::2]:50000".parse().unwrap());
        assert_eq!(seg.flow.server, "[fd00::1]:8080".parse().unwrap());
        assert_eq!(seg.dir, Direction::Response);
    }

    #[test]
    fn short_or_inconsistent_records_are_rejected() {
        let event = SegmentEvent {
            chunk_len: 10,
            ..Default::default()
        };
        assert!(parse_record(&record(&event, b"short"), 0).is_none());
        assert!(parse_record(&[0u8; 8], 0).is_none());
    }

    #[test]
    fn the_embedded_object_holds_the_program_and_maps() {
        let obj = aya_obj::Object::parse(EBPF_OBJECT).expect("valid ELF");
        assert!(obj.programs.contains_key(PROGRAM_NAME));
        for map in ["PORTS", "EVENTS", "COUNTERS"] {
            assert!(obj.maps.contains_key(map), "{map}");
        }
    }
}
