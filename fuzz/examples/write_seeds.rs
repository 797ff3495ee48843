//! Writes the seed inputs of the targets added for issue 14 into `seeds/<target>/`:
//! `cd fuzz && cargo run --example write_seeds`. The seeds are committed; run this again only to
//! change them (the seeds of the older targets were written by hand).
//!
//! Capture files come from `shadow_core::testkit` (the same synthetic connections the unit tests
//! use), ring records from `shadow_core::ring_record::encode_record`, the config from
//! `deploy/shadowtap.example.toml`, the answers from the Open Inference Protocol and TF Serving
//! REST shapes.

use shadow_common::{DIR_REQUEST, DIR_RESPONSE, FAMILY_IPV4, FAMILY_IPV6, SegmentEvent, tcp_flags};
use shadow_core::frame::LinkType;
use shadow_core::ring_record::encode_record;
use shadow_core::testkit::{self, Conn};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = fuzz_dir.join("seeds");
    pcap(&seeds.join("pcap"))?;
    ring_record(&seeds.join("ring_record"))?;
    chunk_joiner(&seeds.join("chunk_joiner"))?;
    config(&fuzz_dir, &seeds.join("config"))?;
    json_diff(&seeds.join("json_diff"))?;
    prediction(&seeds.join("prediction"))?;
    compare(&seeds.join("compare"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
    Ok(())
}

const REQUEST: &[u8] =
    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\n{}";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";

fn pcap(dir: &Path) -> std::io::Result<()> {
    let mut v4 = Conn::new("10.0.0.1:40000", "10.0.0.2:8080");
    v4.handshake().request(REQUEST).response(RESPONSE).close();
    let mut v6 = Conn::new("[fd00::1]:40001", "[fd00::2]:80");
    v6.handshake()
        .request(REQUEST)
        .response(RESPONSE)
        .rst(shadow_core::segment::Direction::Request);
    write(dir, "ethernet_ns.pcap", &testkit::pcap_bytes(v4.segments()))?;
    // Cut by a snap length: the reader reports the missing payload.
    write(
        dir,
        "sll_ipv6_snaplen.pcap",
        &testkit::pcap_bytes_with(LinkType::LinuxSll, v6.segments(), 90),
    )?;
    write(
        dir,
        "raw_ip_us.pcap",
        &testkit::pcap_bytes_with(LinkType::RawIp, v4.segments(), 65_535),
    )?;
    write(
        dir,
        "ethernet_ns.pcapng",
        &testkit::pcapng_bytes(LinkType::Ethernet, v4.segments(), true),
    )?;
    write(
        dir,
        "sll2_ipv6_us.pcapng",
        &testkit::pcapng_bytes(LinkType::LinuxSll2, v6.segments(), false),
    )?;
    write(
        dir,
        "nflog.pcapng",
        &testkit::pcapng_bytes(LinkType::Nflog, &v4.segments()[3..5], true),
    )
}

fn ipv4(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[10, 0, 0, last]);
    a
}

/// Records as the ring reader sees them: each a 2-byte little-endian length, then the record.
fn ring_stream(records: &[(SegmentEvent, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (event, payload) in records {
        let record = encode_record(event, payload);
        out.extend_from_slice(&(record.len() as u16).to_le_bytes());
        out.extend_from_slice(&record);
    }
    out
}

fn ring_record(dir: &Path) -> std::io::Result<()> {
    let request = SegmentEvent {
        ts_ns: 1_000,
        saddr: ipv4(1),
        daddr: ipv4(2),
        sport: 40_000,
        dport: 8080,
        family: FAMILY_IPV4,
        direction: DIR_REQUEST,
        tcp_flags: tcp_flags::ACK | tcp_flags::PSH,
        seq: 1_001,
        ack: 500_001,
        segment_len: REQUEST.len() as u32,
        chunk_len: REQUEST.len() as u32,
        ifindex: 1,
        ..Default::default()
    };
    let syn = SegmentEvent {
        tcp_flags: tcp_flags::SYN,
        seq: 1_000,
        ack: 0,
        segment_len: 0,
        chunk_len: 0,
        ts_ns: 900,
        ..request
    };
    write(
        dir,
        "ipv4_syn_then_request",
        &ring_stream(&[(syn, Vec::new()), (request, REQUEST.to_vec())]),
    )?;
    // One response segment in three chunks, the second lost to a full ring.
    let body = RESPONSE.repeat(3);
    let third = body.len() / 3;
    let response = SegmentEvent {
        ts_ns: 2_000,
        saddr: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets(),
        daddr: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets(),
        sport: 8080,
        dport: 40_001,
        family: FAMILY_IPV6,
        direction: DIR_RESPONSE,
        tcp_flags: tcp_flags::ACK,
        seq: 500_001,
        ack: 1_100,
        segment_len: body.len() as u32,
        chunk_len: third as u32,
        ..Default::default()
    };
    let chunk = |index: u8, flags: u8, range: std::ops::Range<usize>| {
        let e = SegmentEvent {
            chunk_index: index,
            tcp_flags: flags,
            seq: response.seq + range.start as u32,
            chunk_len: range.len() as u32,
            ..response
        };
        (e, body[range].to_vec())
    };
    write(
        dir,
        "ipv6_response_in_chunks",
        &ring_stream(&[
            chunk(0, tcp_flags::ACK, 0..third),
            chunk(1, tcp_flags::ACK, third..2 * third),
            chunk(2, tcp_flags::ACK | tcp_flags::FIN, 2 * third..body.len()),
        ]),
    )?;
    let mut lost = ring_stream(&[
        chunk(0, tcp_flags::ACK, 0..third),
        chunk(2, tcp_flags::ACK | tcp_flags::FIN, 2 * third..body.len()),
    ]);
    // A drain round ends before a record that announces more payload than it holds.
    let mut short = encode_record(&request, REQUEST);
    short.truncate(short.len() - 5);
    lost.extend_from_slice(&(short.len() as u16 | 0x8000).to_le_bytes());
    lost.extend_from_slice(&short);
    write(dir, "lost_chunk_and_short_record", &lost)
}

fn chunk_joiner(dir: &Path) -> std::io::Result<()> {
    // Mode "any": records [connection/response/end round/time], index, seq (2), segment
    // length / 8, chunk length, flags.
    let mut any = vec![0u8];
    any.extend_from_slice(&[0x10, 0, 1, 0, 4, 16, tcp_flags::ACK]);
    any.extend_from_slice(&[0x15, 0, 2, 0, 2, 16, tcp_flags::ACK]);
    any.extend_from_slice(&[0x10, 1, 1, 0, 4, 16, tcp_flags::ACK | tcp_flags::FIN]);
    any.extend_from_slice(&[0x18, 0, 9, 0, 0, 0, tcp_flags::SYN]);
    write(dir, "any_interleaved", &any)?;
    // Mode "whole": segment count, then per segment [connection/response/flags], length (2),
    // chunk size; then the interleaving choices.
    let mut whole = vec![1u8, 2];
    whole.extend_from_slice(&[tcp_flags::FIN << 3, 0x00, 0x02, 200]);
    whole.extend_from_slice(&[0x05 | (tcp_flags::SYN << 3), 0x90, 0x01, 100]);
    whole.extend_from_slice(&[0x02, 0x00, 0x00, 0]);
    whole.extend_from_slice(&[0, 1, 1, 0x80, 0, 1, 2, 0]);
    write(dir, "whole_interleaved", &whole)
}

fn config(fuzz_dir: &Path, dir: &Path) -> std::io::Result<()> {
    let example = std::fs::read(fuzz_dir.join("../deploy/shadowtap.example.toml"))?;
    write(dir, "example.toml", &example)?;
    write(
        dir,
        "minimal.toml",
        b"[capture]\ninterface = \"lo\"\nports = [8080]\n\n[shadow]\nurl = \"http://127.0.0.1:8081\"\n",
    )?;
    write(
        dir,
        "problems.toml",
        b"[capture]\nports = [0, 70000]\nbogus = 1\n\n[shadow]\nurl = \"ftp://x\"\ntimeout_ms = \"soon\"\n\n[compare]\npreset = \"kserve-v9\"\nabs_tolerance = -1.0\n\n[[shadow.rewrite]]\nfrom = \"(\"\nto = \"$9\"\n",
    )
}

const OIP_PRODUCTION: &str = r#"{"model_name":"m","model_version":"1","id":"a1","outputs":[{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]},{"name":"proba","datatype":"FP32","shape":[2,2],"data":[0.2,0.8,0.9,0.1]}]}"#;
const OIP_SHADOW: &str = r#"{"model_name":"m2","model_version":"7","id":"b2","outputs":[{"name":"label","datatype":"INT64","shape":[2],"data":[1,1]},{"name":"proba","datatype":"FP32","shape":[2,2],"data":[0.21,0.79,0.4,0.6]}]}"#;
const TFS_PRODUCTION: &str = r#"{"predictions":[[0.1,0.9],[0.7,0.3]]}"#;
const TFS_SHADOW: &str = r#"{"predictions":[[0.1,0.9],[0.2,0.8]],"extra":{"a/b~c":null}}"#;

fn pair(options: &[u8], production: &str, shadow: &str) -> Vec<u8> {
    let mut out = options.to_vec();
    out.extend_from_slice(production.as_bytes());
    out.push(0xff);
    out.extend_from_slice(shadow.as_bytes());
    out
}

fn json_diff(dir: &Path) -> std::io::Result<()> {
    write(dir, "oip", &pair(&[0x36], OIP_PRODUCTION, OIP_SHADOW))?;
    let mut patterns = pair(&[0x01], OIP_PRODUCTION, OIP_SHADOW);
    patterns.extend_from_slice(b"\xff!/id\n!/outputs/*/name\n/outputs/*/data\n");
    write(dir, "oip_patterns", &patterns)?;
    write(dir, "tfserving", &pair(&[0x00], TFS_PRODUCTION, TFS_SHADOW))
}

fn prediction(dir: &Path) -> std::io::Result<()> {
    let named = |name: &str, body: &str| {
        let mut out = name.as_bytes().to_vec();
        out.push(0xff);
        out.extend_from_slice(body.as_bytes());
        out
    };
    write(dir, "oip", &named("", OIP_PRODUCTION))?;
    write(dir, "oip_label_output", &named("proba", OIP_PRODUCTION))?;
    write(dir, "tfserving", &named("", TFS_PRODUCTION))?;
    write(
        dir,
        "json_pointer",
        &named(
            "/result/class",
            r#"{"result":{"class":["spam","ham"],"score":[0.9,0.6]}}"#,
        ),
    )
}

fn compare(dir: &Path) -> std::io::Result<()> {
    // Options: preset 0 (kserve-v2); tolerances 0.01 abs; cap 8, preset ignores.
    write(
        dir,
        "oip",
        &pair(&[0x00, 0x02, 0x18], OIP_PRODUCTION, OIP_SHADOW),
    )?;
    let mut same = vec![0x00, 0x00, 0x10];
    same.extend_from_slice(OIP_PRODUCTION.as_bytes());
    write(dir, "oip_same_answer", &same)?;
    // Preset 1 (tfserving), unordered arrays, shadow answered 503.
    write(
        dir,
        "tfserving_503",
        &pair(&[0x81, 0x00, 0x20], TFS_PRODUCTION, TFS_SHADOW),
    )?;
    // Preset 4 (tfserving-grpc) with gRPC framing: one uncompressed message each.
    let framed = |message: &[u8]| {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    };
    let mut grpc = vec![0x0c, 0x00, 0x00];
    grpc.extend_from_slice(&framed(&[0x0a, 0x03, b'a', b'b', b'c', 0x10, 0x01]));
    grpc.push(0xff);
    grpc.extend_from_slice(&framed(&[0x0a, 0x03, b'a', b'b', b'd', 0x10, 0x02]));
    write(dir, "grpc_raw", &grpc)
}
