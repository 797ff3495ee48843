//! The reader thread: polls the ring, rejoins chunks into segments, hands them to the daemon
//! without ever waiting, and copies the kernel's per-CPU counters into the shared stats.
//!
//! The thread owns the loaded program: when the [`LiveCapture`] is dropped or shutdown is
//! requested, it delivers what was already captured, exits, and dropping the program detaches
//! the tap.

use super::attach::{AttachedTap, Attachment, KernelTrace, reattach};
use crate::capture::live::{LIVE_CHANNEL_DEPTH, LiveCapture, SharedStats, spawn_reader};
use crate::error::CaptureError;
use crate::logging::RateLimited;
use crate::shutdown::Shutdown;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use shadow_common::counter;
use shadow_core::chunks::ChunkJoiner;
use shadow_core::ring_record::split_record;
use shadow_core::segment::CapturedSegment;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the reader drains the ring. The kernel side submits without a wakeup until the ring
/// is an eighth full, so this timer is what normally collects records (a few ms of delay, far
/// fewer context switches next to production).
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How often the kernel-side counters are read.
const COUNTERS_INTERVAL: Duration = Duration::from_millis(200);

/// How often the tapped interface's index is looked up: a deleted interface takes the tap's
/// links with it, and one created under the same name needs the tap attached anew.
const LINK_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// What became of the tapped interface since the tap was attached to index `attached`, from
/// the index its name has `now` (`None`: no interface has that name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Still the interface the tap is attached to (down/up keeps the index and the links).
    Same,
    /// Deleted: nothing is captured until one of that name is back.
    Gone,
    /// Deleted and created again: a new index, no tap on it yet.
    Recreated(u32),
}

impl LinkChange {
    /// Compares the attached index with the one the name has now.
    pub fn of(attached: u32, now: Option<u32>) -> LinkChange {
        match now {
            Some(index) if index == attached => LinkChange::Same,
            Some(index) => LinkChange::Recreated(index),
            None => LinkChange::Gone,
        }
    }
}

/// Starts the reader thread on an attached tap.
pub fn start(tap: AttachedTap, shutdown: Shutdown) -> Result<LiveCapture, CaptureError> {
    let AttachedTap {
        ebpf,
        ring,
        counters,
        trace,
        attachment,
    } = tap;
    let (tx, rx) = mpsc::channel(LIVE_CHANNEL_DEPTH);
    let stats = Arc::new(SharedStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = RingReader {
        ebpf,
        link: LinkWatch {
            attachment,
            reported: LinkChange::Same,
            lost: stats.clone(),
        },
        ring,
        counters,
        trace,
        tx,
        stats: stats.clone(),
        stop: stop.clone(),
        shutdown,
        clock_offset_ns: realtime_minus_monotonic_ns(),
        channel_full: 0,
        kernel: KernelCounters::default(),
        joiner: ChunkJoiner::default(),
        ready: Vec::new(),
    };
    // Dropping the reader (and its program) at the end detaches the tap (TCX links close with
    // their fds).
    let thread = spawn_reader("shadowtap-ring".into(), move || reader.run())?;
    Ok(LiveCapture {
        segments: rx,
        stats,
        _guard: Box::new(ReaderGuard {
            stop,
            thread: Some(thread),
        }),
    })
}

/// The kernel-side counters (`shadow_common::counter`), each summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Chunk records lost because the ring was full.
    pub ring_full: u64,
    /// Segments longer than the tap copies.
    pub too_long: u64,
    /// Packets whose headers could not be read.
    pub malformed: u64,
    /// Segments of a watched port.
    pub matched: u64,
    /// IP fragments not tapped (see `counter::FRAGMENT`).
    pub fragment: u64,
}

impl KernelCounters {
    /// Reads every counter with `read(index)` (its total over CPUs, see [`sum_over_cpus`]). A
    /// counter that cannot be read keeps its last total, so totals never go backwards.
    pub fn refresh(&mut self, mut read_total: impl FnMut(u32) -> Option<u64>) {
        let mut read = |index: u32, total: &mut u64| {
            if let Some(value) = read_total(index) {
                *total = value;
            }
        };
        read(counter::RING_FULL, &mut self.ring_full);
        read(counter::TOO_LONG, &mut self.too_long);
        read(counter::MALFORMED, &mut self.malformed);
        read(counter::MATCHED, &mut self.matched);
        read(counter::FRAGMENT, &mut self.fragment);
    }
}

/// One counter's total: its per-CPU values summed (saturating: never wraps to a small number).
pub fn sum_over_cpus(values: &[u64]) -> u64 {
    values
        .iter()
        .fold(0u64, |total, &v| total.saturating_add(v))
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
    /// Owns the program and its links.
    ebpf: aya::Ebpf,
    link: LinkWatch,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    trace: Option<KernelTrace>,
    tx: mpsc::Sender<CapturedSegment>,
    stats: Arc<SharedStats>,
    stop: Arc<AtomicBool>,
    shutdown: Shutdown,
    clock_offset_ns: i128,
    /// Records dropped because the daemon's channel was full.
    channel_full: u64,
    kernel: KernelCounters,
    joiner: ChunkJoiner,
    /// Completed segments waiting to be handed over.
    ready: Vec<CapturedSegment>,
}

impl RingReader {
    fn run(mut self) {
        let fd = self.ring.as_fd().as_raw_fd();
        let mut last_counters = Instant::now();
        let mut last_link_check = Instant::now();
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
                    tracing::error!("polling the eBPF ring failed, capture stops: {err}");
                    break;
                }
            }
            self.drain();
            if let Some(trace) = &mut self.trace {
                trace.flush();
            }
            if last_counters.elapsed() >= COUNTERS_INTERVAL {
                self.read_counters();
                last_counters = Instant::now();
            }
            if last_link_check.elapsed() >= LINK_CHECK_INTERVAL {
                self.link.check(&mut self.ebpf);
                last_link_check = Instant::now();
            }
        }
        // Whatever is still in the ring was captured: deliver it before leaving.
        self.drain();
        self.joiner.flush(&mut self.ready);
        self.deliver();
        self.read_counters();
        if let Some(trace) = &mut self.trace {
            trace.flush();
        }
    }

    fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            match split_record(&item) {
                Some((event, payload)) => {
                    self.joiner
                        .push(&event, payload, self.clock_offset_ns, &mut self.ready)
                }
                None => {
                    static MALFORMED: RateLimited = RateLimited::new(Duration::from_secs(60));
                    if let Some(suppressed) = MALFORMED.allow("malformed") {
                        tracing::warn!(len = item.len(), suppressed, "malformed eBPF ring record");
                    }
                }
            }
            // A flood keeps the ring from ever being empty: hand segments over as they come,
            // or this batch would grow with the flood (hundreds of MiB seen under a 1 GiB
            // body).
            if self.ready.len() >= DELIVER_BATCH {
                deliver(
                    &mut self.ready,
                    &self.tx,
                    &self.stats,
                    &mut self.channel_full,
                );
            }
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
        let counters = &self.counters;
        self.kernel.refresh(|index| {
            counters
                .get(&index, 0)
                .map(|per_cpu| sum_over_cpus(&per_cpu))
                .ok()
        });
        let k = self.kernel;
        let store =
            |to: &std::sync::atomic::AtomicU64, value: u64| to.store(value, Ordering::Relaxed);
        store(
            &self.stats.dropped,
            k.ring_full.saturating_add(self.channel_full),
        );
        store(&self.stats.truncated, k.too_long);
        store(&self.stats.kernel_matched, k.matched);
        store(&self.stats.kernel_malformed, k.malformed);
        store(&self.stats.kernel_too_long, k.too_long);
        // Fragments are a drop stage shared with AF_PACKET (`stage="ip_fragment"`).
        store(&self.stats.frame_fragment, k.fragment);
    }
}

/// Follows the tapped interface: says when it is gone (an error: nothing is captured) and
/// re-attaches the tap when an interface of that name is back.
struct LinkWatch {
    attachment: Attachment,
    /// The last change logged (each is logged once).
    reported: LinkChange,
    /// Where "the tap is off its interface" is published (`/healthz`, `shadowtap_tap_attached`).
    lost: Arc<SharedStats>,
}

impl LinkWatch {
    fn check(&mut self, ebpf: &mut aya::Ebpf) {
        let iface = self.attachment.iface.clone();
        let now = nix::net::if_::if_nametoindex(iface.as_str()).ok();
        let change = LinkChange::of(self.attachment.ifindex, now);
        if change == self.reported {
            return;
        }
        match change {
            LinkChange::Same => {}
            LinkChange::Gone => tracing::error!(
                %iface,
                "the tapped interface is gone (deleted): nothing is captured until an \
                 interface of that name is back, then the tap is re-attached (or restart \
                 shadowd with another --interface)"
            ),
            LinkChange::Recreated(ifindex) => match reattach(ebpf, &mut self.attachment, ifindex) {
                Ok(()) => {
                    tracing::warn!(
                        %iface,
                        ifindex,
                        "the tapped interface was re-created: eBPF tap re-attached"
                    );
                    self.reported = LinkChange::Same;
                    self.lost.tap_lost.store(false, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::error!(
                    %iface,
                    ifindex,
                    "the tapped interface was re-created but the tap cannot be re-attached, \
                     nothing is captured: {e}"
                ),
            },
        }
        self.reported = change;
        self.lost
            .tap_lost
            .store(change != LinkChange::Same, Ordering::Relaxed);
    }
}

/// Segments collected from the ring at most before they are handed over.
const DELIVER_BATCH: usize = 256;

/// Hands completed segments to the daemon, never waiting: a full channel (by depth or by
/// bytes) drops and counts.
fn deliver(
    ready: &mut Vec<CapturedSegment>,
    tx: &mpsc::Sender<CapturedSegment>,
    stats: &SharedStats,
    channel_full: &mut u64,
) {
    for segment in ready.drain(..) {
        let len = segment.segment.payload.len();
        if !stats.reserve(len) {
            *channel_full += 1;
            continue;
        }
        match tx.try_send(segment) {
            Ok(()) => stats.delivered(len),
            Err(_) => {
                stats.taken(len);
                *channel_full += 1;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use shadow_common::{SEGMENT_EVENT_SIZE, SegmentEvent};

    #[test]
    fn records_decode_as_the_kernel_lays_the_header_out() {
        // shadow-core reads the header field by field without `unsafe`; the kernel writes the
        // `#[repr(C)]` struct as it lies in memory. Both must agree byte for byte.
        let event = SegmentEvent {
            ts_ns: 0x0102_0304_0506_0708,
            saddr: core::array::from_fn(|i| 0x10 + i as u8),
            daddr: core::array::from_fn(|i| 0x30 + i as u8),
            sport: 0x4142,
            dport: 0x4344,
            family: 0x45,
            direction: 0x46,
            tcp_flags: 0x47,
            chunk_index: 0x48,
            seq: 0x5152_5354,
            ack: 0x5556_5758,
            segment_len: 0x6162_6364,
            chunk_len: 2,
            ifindex: 0x7172_7374,
        };
        // The fields fill the header up to the end of the last one without holes (shadow-common
        // checks the layout); the trailing padding is left out: it is never initialised.
        const FIELD_BYTES: usize = std::mem::offset_of!(SegmentEvent, ifindex) + 4;
        // SAFETY: `event` lives for the whole borrow and its first FIELD_BYTES bytes are its
        // fields.
        let fields = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&event).cast::<u8>(), FIELD_BYTES)
        };
        let mut record = fields.to_vec();
        record.resize(SEGMENT_EVENT_SIZE, 0);
        record.extend_from_slice(b"hi");
        let (decoded, payload) = split_record(&record).expect("a whole record");
        assert_eq!((decoded, payload), (event, &b"hi"[..]));
        let encoded = shadow_core::ring_record::encode_record(&event, b"hi");
        assert_eq!(encoded, record, "the encoder writes the in-memory layout");
    }

    #[test]
    fn a_new_index_under_the_tapped_name_is_a_recreated_interface() {
        assert_eq!(LinkChange::of(7, Some(7)), LinkChange::Same);
        assert_eq!(LinkChange::of(7, None), LinkChange::Gone);
        assert_eq!(LinkChange::of(7, Some(9)), LinkChange::Recreated(9));
    }

    #[test]
    fn counters_are_summed_over_cpus_and_never_go_backwards() {
        assert_eq!(sum_over_cpus(&[100, 0, 23]), 123);
        assert_eq!(sum_over_cpus(&[]), 0);
        assert_eq!(
            sum_over_cpus(&[5, u64::MAX]),
            u64::MAX,
            "saturates, never wraps"
        );

        let mut kernel = KernelCounters::default();
        let per_cpu = |index: u32| -> &'static [u64] {
            match index {
                counter::RING_FULL => &[1, 0, 2],
                counter::TOO_LONG => &[0, 0, 0],
                counter::MALFORMED => &[3, 4, 0],
                counter::MATCHED => &[100, 0, 23],
                counter::FRAGMENT => &[0, 2, 5],
                _ => panic!("no counter {index}"),
            }
        };
        kernel.refresh(|index| Some(sum_over_cpus(per_cpu(index))));
        assert_eq!(
            kernel,
            KernelCounters {
                ring_full: 3,
                too_long: 0,
                malformed: 7,
                matched: 123,
                fragment: 7,
            }
        );
        // A counter that cannot be read keeps its total; the others move on.
        kernel.refresh(|index| (index != counter::MATCHED).then_some(9));
        assert_eq!(kernel.matched, 123);
        assert_eq!(
            (kernel.ring_full, kernel.malformed, kernel.fragment),
            (9, 9, 9)
        );
    }
}
