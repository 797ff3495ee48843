//! A capture file read as if it were a live tap (`shadowd replay`): a reader thread turns a
//! pcap or pcapng file into the same [`LiveCapture`] the eBPF and AF_PACKET backends hand the
//! daemon, so the rest of the data path cannot tell the difference.
//!
//! Unlike a live tap it never drops: the reader waits while the daemon is busy (a file can
//! wait, production cannot). With [`Speed::Recorded`] each segment is delivered when its
//! capture timestamp is due ([`Pacer`]), so the shadow sees production's pacing; with
//! [`Speed::Max`] as fast as the daemon takes them. [`FileProgress`] tells how far the
//! reader is (bytes of the file, packets, segments) for a progress bar.

use super::live::{SharedStats, spawn_reader};
use super::{LIVE_CHANNEL_DEPTH, LiveCapture};
use crate::error::CaptureError;
use crate::shutdown::Shutdown;
use shadow_core::frame::FrameSkip;
use shadow_core::pcap::{PcapError, PcapSource, PcapStats};
use shadow_core::segment::CapturedSegment;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The longest single sleep of the paced reader (it looks at the shutdown in between).
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// How fast a capture file is replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Speed {
    /// At the pace it was recorded (`1x`): each segment when its timestamp is due.
    #[default]
    Recorded,
    /// As fast as the daemon takes the segments (`max`).
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1x" | "1" => Ok(Speed::Recorded),
            "max" => Ok(Speed::Max),
            other => Err(format!(
                "unknown speed `{other}`: expected 1x (recorded pacing) or max"
            )),
        }
    }
}

/// When each segment of a file is due, from capture timestamps (sans-IO: the caller passes the
/// time elapsed since the first segment was delivered).
///
/// The first segment is due at once; each later one `ts - first_ts` after it. A timestamp
/// earlier than the first (files merged out of order) is due at once too: the reader never
/// holds a segment back for a clock that went backwards.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pacer {
    first_ts_ns: Option<u64>,
}

impl Pacer {
    /// How long after the first segment's delivery the segment captured at `ts_ns` is due.
    pub fn due(&mut self, ts_ns: u64) -> Duration {
        let first = *self.first_ts_ns.get_or_insert(ts_ns);
        Duration::from_nanos(ts_ns.saturating_sub(first))
    }

    /// How long to wait before delivering the segment captured at `ts_ns`, `elapsed` after the
    /// first was delivered (zero when it is already due).
    pub fn wait(&mut self, ts_ns: u64, elapsed: Duration) -> Duration {
        self.due(ts_ns).saturating_sub(elapsed)
    }
}

/// How far the reader is; shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct FileProgress {
    /// The file's size in bytes.
    pub size: u64,
    bytes_read: Arc<AtomicU64>,
    segments: AtomicU64,
    done: AtomicBool,
    stats: Mutex<PcapStats>,
    read_error: Mutex<Option<String>>,
}

impl FileProgress {
    /// Bytes of the file read so far (buffered ahead of the packets decoded by at most 1 MiB).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed).min(self.size)
    }

    /// Segments of the watched ports delivered so far.
    pub fn segments(&self) -> u64 {
        self.segments.load(Ordering::Relaxed)
    }

    /// Whether the reader reached the end of the file (or stopped on an error or shutdown).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The file's counters (packets, segments, skipped frames) as of the last segment.
    pub fn stats(&self) -> PcapStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the reader stopped before the end of the file, if it did (a file cut mid-packet,
    /// a corrupt block).
    pub fn read_error(&self) -> Option<String> {
        self.read_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A capture file being read.
pub struct FileCapture {
    /// The segments, as a live tap delivers them.
    pub capture: LiveCapture,
    /// How far the reader is.
    pub progress: Arc<FileProgress>,
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A capture file opened and its format checked, not read yet.
pub struct PcapFile {
    source: PcapSource<BufReader<Counting<File>>>,
    progress: Arc<FileProgress>,
}

impl PcapFile {
    /// Opens `path` and reads its header: a missing, unreadable or non-capture file fails here,
    /// before anything else starts. Only TCP segments of `ports` will be read.
    pub fn open(path: &Path, ports: &[u16]) -> Result<PcapFile, PcapError> {
        let open_err = |source| PcapError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        let bytes_read = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: file,
            read: bytes_read.clone(),
        };
        let source = PcapSource::new(BufReader::with_capacity(1 << 20, counting), path, ports)?;
        let progress = Arc::new(FileProgress {
            size: meta.len(),
            bytes_read,
            ..FileProgress::default()
        });
        Ok(PcapFile { source, progress })
    }

    /// How far the reader is (once started).
    pub fn progress(&self) -> Arc<FileProgress> {
        self.progress.clone()
    }

    /// Starts the reader thread, delivering the file's segments at `speed` until its end or
    /// `shutdown`.
    pub fn start(self, speed: Speed, shutdown: Shutdown) -> Result<FileCapture, CaptureError> {
        let stats = Arc::new(SharedStats::default());
        let (tx, segments) = mpsc::channel(LIVE_CHANNEL_DEPTH);
        let reader = Reader {
            source: self.source,
            tx,
            stats: stats.clone(),
            progress: self.progress.clone(),
            speed,
            shutdown,
        };
        spawn_reader("pcap-reader".into(), move || reader.run())?;
        Ok(FileCapture {
            capture: LiveCapture {
                segments,
                stats,
                _guard: Box::new(()),
            },
            progress: self.progress,
        })
    }
}

struct Reader<R: Read> {
    source: PcapSource<R>,
    tx: mpsc::Sender<CapturedSegment>,
    stats: Arc<SharedStats>,
    progress: Arc<FileProgress>,
    speed: Speed,
    shutdown: Shutdown,
}

impl<R: Read> Reader<R> {
    fn run(mut self) {
        let mut pacer = Pacer::default();
        let mut started = None;
        while let Some(next) = self.source.next_segment() {
            if self.shutdown.is_requested() {
                break;
            }
            let file_segment = match next {
                Ok(s) => s,
                Err(e) => {
                    let message = match e {
                        // A file cut mid-packet: everything before the cut counts.
                        PcapError::Truncated { .. } => e.to_string(),
                        e => format!("stopped reading early: {:#}", anyhow::Error::new(e)),
                    };
                    *self
                        .progress
                        .read_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(message);
                    break;
                }
            };
            if self.speed == Speed::Recorded {
                let started = *started.get_or_insert_with(Instant::now);
                if !self.sleep(pacer.wait(file_segment.segment.ts_ns, started.elapsed())) {
                    break;
                }
            }
            self.publish();
            self.stats.delivered(file_segment.segment.payload.len());
            if file_segment.missing > 0 {
                self.stats.truncated.fetch_add(1, Ordering::Relaxed);
            }
            self.progress.segments.fetch_add(1, Ordering::Relaxed);
            let segment = CapturedSegment {
                segment: file_segment.segment,
                missing: file_segment.missing,
            };
            // Waits while the daemon is busy: nothing read from a file is dropped. Its bytes are
            // queued (`memory_bytes{stage="capture"}`) like a live tap's, bounded by the
            // channel's depth instead of refused.
            self.stats
                .queued_bytes
                .fetch_add(segment.segment.payload.len() as u64, Ordering::Relaxed);
            if self.tx.blocking_send(segment).is_err() {
                break;
            }
        }
        self.publish();
        self.progress.done.store(true, Ordering::Release);
    }

    /// Sleeps `wait` in slices, false if shutdown was requested meanwhile.
    fn sleep(&self, mut wait: Duration) -> bool {
        while !wait.is_zero() {
            if self.shutdown.is_requested() {
                return false;
            }
            let slice = wait.min(MAX_SLEEP);
            std::thread::sleep(slice);
            wait -= slice;
        }
        !self.shutdown.is_requested()
    }

    /// Copies the file's counters to the capture's (frames that yielded no segment) and to
    /// the progress.
    fn publish(&self) {
        let stats = self.source.stats();
        for (reason, counter) in [
            (FrameSkip::Fragment, &self.stats.frame_fragment),
            (FrameSkip::Truncated, &self.stats.frame_truncated),
            (FrameSkip::Malformed, &self.stats.frame_malformed),
        ] {
            counter.store(stats.skipped(reason), Ordering::Relaxed);
        }
        *self
            .progress
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = stats;
    }
}

/// Packets read at most by [`ports_with_traffic`].
pub const PORT_SCAN_PACKETS: u64 = 100_000;

/// The TCP server ports that have traffic in the first [`PORT_SCAN_PACKETS`] packets of
/// `path`, busiest first, with their segment counts: the ports connections were opened to
/// (SYN), or, in a capture that joined its connections after they opened, the lower port of
/// each segment.
pub fn ports_with_traffic(path: &Path) -> Result<Vec<(u16, u64)>, PcapError> {
    let every_port: Vec<u16> = (1..=u16::MAX).collect();
    let mut source = PcapSource::open(path, &every_port)?;
    let (mut opened, mut lower) = (BTreeMap::new(), BTreeMap::new());
    while source.stats().packets < PORT_SCAN_PACKETS {
        let Some(Ok(s)) = source.next_segment() else {
            break;
        };
        // Every port is watched: the destination port is taken as the server's.
        let (src, dst) = (s.segment.flow.client.port(), s.segment.flow.server.port());
        if s.segment.flags.syn() && !s.segment.flags.ack() {
            *opened.entry(dst).or_insert(0u64) += 1;
        }
        *lower.entry(src.min(dst)).or_insert(0u64) += 1;
    }
    let counts = if opened.is_empty() { lower } else { opened };
    let mut ports: Vec<(u16, u64)> = counts.into_iter().collect();
    ports.sort_by_key(|&(port, n)| (std::cmp::Reverse(n), port));
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_pacer_keeps_the_recorded_spacing() {
        let mut pacer = Pacer::default();
        let t0 = 1_700_000_000_000 * MS;
        // The first segment is due at once, whenever it was captured.
        assert_eq!(pacer.wait(t0, Duration::ZERO), Duration::ZERO);
        // 250 ms later on the wire, 100 ms later here: wait the 150 ms left.
        assert_eq!(
            pacer.wait(t0 + 250 * MS, Duration::from_millis(100)),
            Duration::from_millis(150)
        );
        // Already late: no wait.
        assert_eq!(
            pacer.wait(t0 + 300 * MS, Duration::from_millis(900)),
            Duration::ZERO
        );
        // Same timestamp as the first: due at once; a clock that went backwards too.
        assert_eq!(pacer.wait(t0, Duration::ZERO), Duration::ZERO);
        assert_eq!(pacer.wait(t0 - 5 * MS, Duration::ZERO), Duration::ZERO);
        // A gap of an hour stays an hour.
        assert_eq!(pacer.due(t0 + 3_600_000 * MS), Duration::from_secs(3600));
    }

    /// A capture of one connection to each of the server ports given, 300 ms apart; returns
    /// the file and how many of its segments are of port 8080.
    fn capture(dir: &Path, servers: &[u16]) -> (std::path::PathBuf, usize) {
        use shadow_core::testkit::{Conn, pcap_bytes};
        let t0 = 1_700_000_000_000 * MS;
        let mut segments = Vec::new();
        for (i, port) in servers.iter().enumerate() {
            let mut c = Conn::new(
                &format!("10.0.0.1:{}", 40000 + i),
                &format!("10.0.0.2:{port}"),
            )
            .at(t0 + i as u64 * 300 * MS);
            c.handshake()
                .request(b"GET / HTTP/1.1\r\n\r\n")
                .response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .close();
            segments.extend(c.into_segments());
        }
        let path = dir.join("c.pcap");
        std::fs::write(&path, pcap_bytes(&segments)).unwrap();
        let watched = segments.iter().filter(|s| s.flow.server.port() == 8080);
        (path, watched.count())
    }

    #[test]
    fn the_ports_with_traffic_are_the_ones_connections_were_opened_to() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = capture(dir.path(), &[8080, 9000, 8080]);
        assert_eq!(
            ports_with_traffic(&path).unwrap(),
            vec![(8080, 2), (9000, 1)]
        );
    }

    /// Reads the whole file at `speed`; returns the segments delivered and how long it took.
    fn read_all(path: &Path, speed: Speed) -> (usize, Duration) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_trigger, shutdown) = crate::shutdown::channel();
        let file = PcapFile::open(path, &[8080]).unwrap();
        let started = Instant::now();
        let mut capture = file.start(speed, shutdown).unwrap();
        let mut n = 0;
        runtime.block_on(async {
            while capture.capture.segments.recv().await.is_some() {
                n += 1;
            }
        });
        assert!(capture.progress.is_done());
        assert_eq!(capture.progress.segments(), n as u64);
        assert_eq!(capture.progress.bytes_read(), capture.progress.size);
        (n, started.elapsed())
    }

    #[test]
    fn the_reader_delivers_every_segment_of_the_port_at_the_chosen_speed() {
        let dir = tempfile::tempdir().unwrap();
        // Two connections to 8080 600 ms apart (one to another port between them).
        let (path, watched) = capture(dir.path(), &[8080, 9000, 8080]);
        let (fast, took) = read_all(&path, Speed::Max);
        let (paced, paced_took) = read_all(&path, Speed::Recorded);
        assert_eq!(fast, paced);
        assert_eq!(fast, watched);
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert!(paced_took >= Duration::from_millis(600), "{paced_took:?}");
    }

    #[test]
    fn speeds_parse_and_others_are_refused() {
        assert_eq!("1x".parse::<Speed>(), Ok(Speed::Recorded));
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        let err = "2x".parse::<Speed>().unwrap_err();
        assert!(
            err.contains("expected 1x (recorded pacing) or max"),
            "{err}"
        );
    }
}
