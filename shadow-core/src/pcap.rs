//! Offline capture source: reads pcap and pcapng files into [`crate::segment::Segment`]s.
//!
//! The format is told by the file's magic number. Ethernet (with VLAN tags and PPPoE), raw
//! IP, Linux cooked (SLL, SLL2), BSD loopback (NULL, LOOP) and NFLOG link types are read, IPv4
//! and IPv6. A packet cut by the capture's snap length is returned with the number of payload
//! bytes that are missing (from the IP lengths), so that reassembly marks them as a gap instead
//! of stitching a shortened body. Frames that yield no segment are counted by
//! [`FrameSkip`] reason; a file cut in the middle of a packet ends with
//! [`PcapError::Truncated`] after the packets before it.

use crate::frame::{FrameSkip, LinkType, decode};
use crate::segment::Segment;
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::fs::File;
use std::io::{BufReader, Chain, Cursor, ErrorKind, Read};
use std::path::{Path, PathBuf};

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];

/// One segment read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSegment {
    /// The segment, with the payload as far as the file holds it.
    pub segment: Segment,
    /// Payload bytes cut off by the snap length (0 when the packet was captured whole).
    pub missing: u32,
}

/// What was read so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Packets in the file.
    pub packets: u64,
    /// Packets that were TCP to or from a watched port.
    pub segments: u64,
    /// Segments whose payload was cut by the snap length.
    pub cut: u64,
    /// Captured packet bytes.
    pub bytes: u64,
    /// Packets that yielded no segment, by [`FrameSkip`] reason (indexed like
    /// [`FrameSkip::ALL`]; read with [`PcapStats::skipped`]).
    skipped: [u64; FrameSkip::ALL.len()],
}

impl PcapStats {
    /// Packets that yielded no segment for `reason`.
    pub fn skipped(&self, reason: FrameSkip) -> u64 {
        self.skipped[reason as usize]
    }

    /// Packets that may have carried watched bytes but could not be decoded
    /// ([`FrameSkip::is_loss`]).
    pub fn undecodable(&self) -> u64 {
        FrameSkip::ALL
            .iter()
            .filter(|r| r.is_loss())
            .map(|&r| self.skipped(r))
            .sum()
    }

    fn skip(&mut self, reason: FrameSkip) {
        self.skipped[reason as usize] += 1;
    }
}

/// A pcap or pcapng file's packets.
enum Format<R: Read> {
    Pcap {
        reader: PcapReader<R>,
        link: LinkType,
        /// Nanosecond (not microsecond) timestamps.
        nanos: bool,
    },
    PcapNg {
        reader: PcapNgReader<R>,
        /// Per interface: link type (if readable) and ns per timestamp unit (numerator,
        /// denominator).
        interfaces: Vec<(Result<LinkType, DataLink>, u64, u64)>,
    },
}

type Source<R> = Chain<Cursor<[u8; 4]>, R>;

/// Reads TCP segments of the watched ports from a pcap or pcapng stream.
pub struct PcapSource<R: Read> {
    path: PathBuf,
    format: Format<Source<R>>,
    ports: Vec<u16>,
    stats: PcapStats,
    done: bool,
}

impl PcapSource<BufReader<File>> {
    /// Opens `path`.
    pub fn open(path: &Path, ports: &[u16]) -> Result<Self, PcapError> {
        let file = File::open(path).map_err(|source| PcapError::Open {
            path: path.to_owned(),
            source,
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(PcapError::Open {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            });
        }
        Self::new(BufReader::with_capacity(1 << 20, file), path, ports)
    }
}

impl<R: Read> PcapSource<R> {
    /// Reads from `reader`; `path` names it in errors.
    pub fn new(mut reader: R, path: &Path, ports: &[u16]) -> Result<Self, PcapError> {
        let format_err = |reason: String, source: Option<pcap_file::PcapError>| PcapError::Format {
            path: path.to_owned(),
            reason,
            source,
        };
        let mut magic = [0u8; 4];
        let mut filled = 0;
        while filled < 4 {
            match reader.read(&mut magic[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PcapError::Open {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
        if filled < 4 {
            return Err(format_err(format!("only {filled} bytes long"), None));
        }
        let source = Cursor::new(magic).chain(reader);
        let format = if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(source)
                .map_err(|e| format_err("unreadable pcapng section header".into(), Some(e)))?;
            Format::PcapNg {
                reader,
                interfaces: Vec::new(),
            }
        } else if PCAP_MAGICS.contains(&magic) {
            let reader = PcapReader::new(source)
                .map_err(|e| format_err("unreadable pcap header".into(), Some(e)))?;
            let datalink = reader.header().datalink;
            let link = link_type(datalink).map_err(|d| PcapError::LinkType {
                path: path.to_owned(),
                linktype: format!("{d:?}"),
            })?;
            let nanos = reader.header().ts_resolution == pcap_file::TsResolution::NanoSecond;
            Format::Pcap {
                reader,
                link,
                nanos,
            }
        } else {
            return Err(format_err(
                format!("unknown magic number {magic:02x?}"),
                None,
            ));
        };
        Ok(Self {
            path: path.to_owned(),
            format,
            ports: ports.to_vec(),
            stats: PcapStats::default(),
            done: false,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> PcapStats {
        self.stats
    }

    /// The next TCP segment of a watched port. `Err` ends the stream: a file cut in the
    /// middle of a packet ([`PcapError::Truncated`]), a corrupt block, or (pcapng) an
    /// interface with an unsupported link type.
    pub fn next_segment(&mut self) -> Option<Result<FileSegment, PcapError>> {
        while !self.done {
            match self.next_packet() {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(None)) => {}
                Some(Ok(Some(segment))) => return Some(Ok(segment)),
            }
        }
        None
    }

    fn next_packet(&mut self) -> Option<Result<Option<FileSegment>, PcapError>> {
        let packets = self.stats.packets;
        let format_err = |e: pcap_file::PcapError| match e {
            pcap_file::PcapError::IncompleteBuffer => PcapError::Truncated {
                path: self.path.clone(),
                packets,
            },
            pcap_file::PcapError::IoError(io) if io.kind() == ErrorKind::UnexpectedEof => {
                PcapError::Truncated {
                    path: self.path.clone(),
                    packets,
                }
            }
            e => PcapError::Format {
                path: self.path.clone(),
                reason: "unreadable packet record".into(),
                source: Some(e),
            },
        };
        let (link, data, orig_len, ts_ns) = match &mut self.format {
            Format::Pcap {
                reader,
                link,
                nanos,
            } => {
                // Raw packets: pcap-file's checked packets reject `orig_len > snaplen`, which
                // is exactly what a `tcpdump -s` capture of a large packet contains.
                let packet = match reader.next_raw_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(format_err(e))),
                };
                let frac = u64::from(packet.ts_frac) * if *nanos { 1 } else { 1_000 };
                let ts = u64::from(packet.ts_sec) * 1_000_000_000 + frac;
                (*link, packet.data, packet.orig_len, ts)
            }
            Format::PcapNg { reader, interfaces } => {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(format_err(e))),
                };
                match block {
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        return Some(Ok(None));
                    }
                    Block::InterfaceDescription(idb) => {
                        interfaces.push((
                            link_type(idb.linktype),
                            ts_units(&idb.options).0,
                            ts_units(&idb.options).1,
                        ));
                        return Some(Ok(None));
                    }
                    Block::EnhancedPacket(epb) => {
                        let Some(&(link, num, den)) = interfaces.get(epb.interface_id as usize)
                        else {
                            return Some(Err(PcapError::Format {
                                path: self.path.clone(),
                                reason: format!(
                                    "packet names unknown interface {}",
                                    epb.interface_id
                                ),
                                source: None,
                            }));
                        };
                        let link = match link {
                            Ok(link) => link,
                            Err(d) => {
                                return Some(Err(PcapError::LinkType {
                                    path: self.path.clone(),
                                    linktype: format!("{d:?}"),
                                }));
                            }
                        };
                        // pcap-file reports the raw timestamp as nanoseconds.
                        let raw = epb.timestamp.as_nanos();
                        let ts = u64::try_from(raw * u128::from(num) / u128::from(den))
                            .unwrap_or(u64::MAX);
                        (link, epb.data, epb.original_len, ts)
                    }
                    _ => return Some(Ok(None)),
                }
            }
        };
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        let decoded = match decode(link, &data, &self.ports, ts_ns) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.stats.skip(reason);
                return Some(Ok(None));
            }
        };
        self.stats.segments += 1;
        let segment = decoded.segment;
        // The IP lengths say how much payload was cut; when they do not (GSO super-packets
        // record IP length 0), the frame lengths do.
        let missing = decoded.missing.unwrap_or_else(|| {
            u32::try_from((orig_len as usize).saturating_sub(data.len())).unwrap_or(u32::MAX)
        });
        if missing > 0 {
            self.stats.cut += 1;
        }
        Some(Ok(Some(FileSegment { segment, missing })))
    }
}

/// The link types shadowd decodes.
fn link_type(datalink: DataLink) -> Result<LinkType, DataLink> {
    match datalink {
        DataLink::ETHERNET => Ok(LinkType::Ethernet),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Ok(LinkType::RawIp),
        DataLink::LINUX_SLL => Ok(LinkType::LinuxSll),
        DataLink::LINUX_SLL2 => Ok(LinkType::LinuxSll2),
        DataLink::NULL | DataLink::LOOP => Ok(LinkType::Null),
        DataLink::NFLOG => Ok(LinkType::Nflog),
        // DLT_RAW as numbered on some BSDs.
        other if matches!(u32::from(other), 12 | 14) => Ok(LinkType::RawIp),
        other => Err(other),
    }
}

/// pcapng `if_tsresol` as a ratio ns/unit: default microseconds.
fn ts_units(options: &[InterfaceDescriptionOption<'_>]) -> (u64, u64) {
    let resol = options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        })
        .unwrap_or(6);
    if resol & 0x80 == 0 {
        let exp = u32::from(resol.min(19));
        if exp <= 9 {
            (10u64.pow(9 - exp), 1)
        } else {
            (1, 10u64.pow(exp - 9))
        }
    } else {
        // Power of two: 2^-n seconds.
        let exp = u32::from((resol & 0x7f).min(63));
        (1_000_000_000, 1u64 << exp)
    }
}

/// Failures reading or writing capture files.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file cannot be opened or read.
    #[error("cannot open `{path}`")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        source: std::io::Error,
    },
    /// The file cannot be created.
    #[error("cannot create `{path}`")]
    Create {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        source: std::io::Error,
    },
    /// The file is not a (readable) pcap or pcapng capture.
    #[error("`{path}` is not a pcap or pcapng file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// What the pcap reader reported, when it was the one that failed.
        #[source]
        source: Option<pcap_file::PcapError>,
    },
    /// The file ends in the middle of a packet (a capture cut short, e.g. copied while
    /// it was written): the packets before it were read.
    #[error(
        "truncated file after {packets} packets: `{path}` ends inside a packet (a capture cut \
         short or copied while it was written); the packets before the cut were read"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Whole packets read before the cut.
        packets: u64,
    },
    /// The capture's link type is not one the frame decoder reads.
    #[error(
        "`{path}` uses link type {linktype}, which shadowd does not read (it reads Ethernet \
         with VLAN/PPPoE, raw IP, Linux cooked SLL/SLL2, BSD loopback NULL/LOOP and NFLOG); \
         capture again on an Ethernet interface or with `tcpdump -i any`"
    )]
    LinkType {
        /// The file.
        path: PathBuf,
        /// The link type it declares.
        linktype: String,
    },
    /// Writing the file failed.
    #[error("writing `{path}` failed (check free space and permissions)")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::Direction;
    use crate::testkit::{self, Conn};

    fn sample() -> Vec<Segment> {
        let mut v4 = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
        v4.handshake()
            .request(b"GET /a HTTP/1.1\r\n\r\n")
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA")
            .close();
        let mut v6 = Conn::new("[2001:db8::2]:40001", "[2001:db8::1]:8080");
        v6.handshake()
            .request(b"GET /b HTTP/1.1\r\n\r\n")
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB")
            .close();
        testkit::interleave(vec![v4.into_segments(), v6.into_segments()])
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<FileSegment>, PcapError> {
        let mut src = PcapSource::new(bytes, Path::new("mem.pcap"), &[8080])?;
        let mut out = Vec::new();
        while let Some(s) = src.next_segment() {
            out.push(s?);
        }
        Ok(out)
    }

    #[test]
    fn every_link_type_and_format_reads_the_same_segments() {
        let segs = sample();
        let mut files = vec![("pcap ethernet ns", testkit::pcap_bytes(&segs))];
        for link in [
            LinkType::Ethernet,
            LinkType::RawIp,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::Null,
            LinkType::Nflog,
        ] {
            files.push(("pcap µs", testkit::pcap_bytes_with(link, &segs, 65535)));
            files.push(("pcapng ns", testkit::pcapng_bytes(link, &segs, true)));
            files.push((
                "pcapng µs default",
                testkit::pcapng_bytes(link, &segs, false),
            ));
        }
        for (name, bytes) in files {
            let read = read_all(&bytes).unwrap();
            let got: Vec<Segment> = read.iter().map(|f| f.segment.clone()).collect();
            assert_eq!(got, segs, "{name}");
            assert!(read.iter().all(|f| f.missing == 0), "{name}");
        }
    }

    #[test]
    fn snaplen_cut_packets_report_missing_bytes() {
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
        c.handshake().request(&[b'x'; 300]);
        // Ethernet 14 + IPv4 20 + TCP 20 = 54 header bytes; keep 100 of each frame.
        let bytes = testkit::pcap_bytes_with(LinkType::Ethernet, c.segments(), 100);
        let read = read_all(&bytes).unwrap();
        let data = read.iter().find(|f| !f.segment.payload.is_empty()).unwrap();
        assert_eq!(data.segment.payload.len(), 46);
        assert_eq!(data.missing, 254);
        assert_eq!(data.segment.dir, Direction::Request);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            read_all(b"not a capture file at all"),
            Err(PcapError::Format { .. })
        ));
        assert!(matches!(read_all(b"ab"), Err(PcapError::Format { .. })));
        // A pcap header announcing ARCNET.
        let mut bad = testkit::pcap_bytes_with(LinkType::Ethernet, &[], 65535);
        bad[20..24].copy_from_slice(&7u32.to_be_bytes());
        let err = read_all(&bad).unwrap_err();
        assert!(matches!(err, PcapError::LinkType { .. }));
        assert!(err.to_string().contains("ARCNET"), "{err}");
        let missing = PcapSource::open(Path::new("/nonexistent/x.pcap"), &[80]);
        assert!(matches!(missing, Err(PcapError::Open { .. })));
    }

    #[test]
    fn a_file_cut_mid_packet_is_truncated_after_its_whole_packets() {
        let segments = sample();
        for (name, full) in [
            ("pcap", testkit::pcap_bytes(&segments)),
            (
                "pcapng",
                testkit::pcapng_bytes(LinkType::Ethernet, &segments, true),
            ),
        ] {
            let mut src =
                PcapSource::new(&full[..full.len() - 5], Path::new("cut.pcap"), &[8080]).unwrap();
            let mut ok = 0;
            let mut errors = Vec::new();
            while let Some(s) = src.next_segment() {
                match s {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e),
                }
            }
            assert_eq!(ok, segments.len() - 1, "{name}");
            let [PcapError::Truncated { packets, .. }] = &errors[..] else {
                panic!("{name}: expected one Truncated error, got {errors:?}");
            };
            assert_eq!(*packets, segments.len() as u64 - 1, "{name}");
            assert!(
                errors[0]
                    .to_string()
                    .starts_with(&format!("truncated file after {packets} packets: ")),
                "{name}"
            );
        }
    }

    #[test]
    fn frames_without_a_segment_are_counted_by_reason() {
        let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
        c.handshake().request(b"GET / HTTP/1.1\r\n\r\n");
        let mut other = Conn::new("10.0.0.1:40001", "10.0.0.2:9999");
        other.handshake();
        let mut frames: Vec<Vec<u8>> = c
            .segments()
            .iter()
            .chain(other.segments())
            .map(|s| testkit::frame(LinkType::Ethernet, s))
            .collect();
        let mut fragment = frames[3].clone();
        fragment[14 + 6] = 0x20; // more fragments
        let mut arp = frames[0].clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        frames.extend([fragment, arp, frames[0][..30].to_vec()]);
        let bytes = testkit::pcap_of_frames(LinkType::Ethernet, &frames, 65535);
        let mut src = PcapSource::new(&bytes[..], Path::new("mixed.pcap"), &[8080]).unwrap();
        while src.next_segment().is_some() {}
        let stats = src.stats();
        assert_eq!(stats.packets, 10);
        assert_eq!(stats.segments, 4);
        assert_eq!(stats.skipped(FrameSkip::OtherPort), 3);
        assert_eq!(stats.skipped(FrameSkip::Fragment), 1);
        assert_eq!(stats.skipped(FrameSkip::NotIp), 1);
        assert_eq!(stats.skipped(FrameSkip::Truncated), 1);
        assert_eq!(stats.undecodable(), 2);
        let missing = PcapSource::open(Path::new("/nonexistent/x.pcap"), &[80]);
        assert!(matches!(missing, Err(PcapError::Open { .. })));
    }
}
