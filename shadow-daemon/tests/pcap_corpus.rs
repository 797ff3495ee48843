//! `shadowd inspect` over the public real-world captures in `../shared/pcap_corpus/` (next to
//! the repository; `SHADOWTAP_PCAP_CORPUS` points elsewhere): per file, the exchanges per
//! outcome, the orphan responses, a digest of the complete exchanges' `(method, target,
//! status)` and the sum of their latencies, all checked by hand against Wireshark's tshark.
//!
//! How the values were verified: `tshark -2 -r FILE -d tcp.port==P,http -Y 'http.request or
//! http.response'` with `http.request_in`/`http.response_in`/`http.time`, paired per request
//! (1xx excluded). `tshark: (requests, paired)` records what tshark found. `SAME` means the
//! complete exchanges are exactly tshark's paired requests (method, target, status) and each
//! latency is within 2 µs of tshark's `http.time`, except that a close-delimited response is
//! timed to its last byte here and to the FIN in tshark (`ppp__three_http_streams`,
//! `ppp__http-packets2`). Every other file says in one line why it differs.
//!
//! The test needs no tshark at run time. When the corpus directory is absent it prints why and
//! passes.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The outcome labels of `inspect`'s JSON lines, in the order of [`Run::Read::outcomes`].
const OUTCOMES: [&str; 6] = [
    "complete",
    "gap",
    "truncated",
    "no_response",
    "unparsable",
    "incomplete",
];

/// What `inspect` must report for one capture.
enum Run {
    /// Read to the end (exit 0).
    Read {
        /// Exchanges per outcome, in [`OUTCOMES`] order.
        outcomes: [u64; 6],
        /// `orphan_responses` of the summary line.
        orphans: u64,
        /// FNV-1a 64 of the sorted `METHOD target status` lines of the complete exchanges.
        pairs: u64,
        /// Sum of the complete exchanges' `latency_us`.
        latency_us: u64,
    },
    /// Refused with exit 2 and a message containing this.
    Refused(&'static str),
}

impl Run {
    const fn read(outcomes: [u64; 6], orphans: u64, pairs: u64, latency_us: u64) -> Run {
        Run::Read {
            outcomes,
            orphans,
            pairs,
            latency_us,
        }
    }
}

/// How the result compares with tshark's.
enum Tshark {
    /// Same complete exchanges as tshark's paired requests.
    Same,
    /// Deliberately different, and why.
    Differs(&'static str),
}

const SAME: Tshark = Tshark::Same;

const fn differs(reason: &'static str) -> Tshark {
    Tshark::Differs(reason)
}

struct Expected {
    file: &'static str,
    /// tshark's (requests, paired requests).
    tshark: (u64, u64),
    run: Run,
    vs_tshark: Tshark,
}

#[rustfmt::skip]
const CORPUS: &[Expected] = &[
    Expected { file: "zeek__http__bro.org.pcap", tshark: (31, 30), run: Run::read([30, 1, 0, 0, 0, 0], 0, 0x13035405b3fd3a75, 3336087), vs_tshark: SAME },
    Expected { file: "zeek__wikipedia.pcap", tshark: (15, 15), run: Run::read([15, 0, 0, 0, 0, 0], 0, 0x081662319132b63b, 904744), vs_tshark: SAME },
    Expected { file: "zeek__workshop_2011_browse.pcap", tshark: (17, 17), run: Run::read([17, 0, 0, 0, 0, 0], 0, 0x09e3f7ce07bad642, 2383542), vs_tshark: SAME },
    Expected { file: "zeek__http__pipelined-requests.pcap", tshark: (5, 5), run: Run::read([5, 0, 0, 0, 0, 0], 0, 0xd420d9e041908b51, 48282), vs_tshark: SAME },
    Expected { file: "zeek__http__get-gzip.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x6c21834708d38ca4, 35297), vs_tshark: SAME },
    Expected { file: "zeek__http__x-gzip.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x9ee293767f41bb68, 84), vs_tshark: SAME },
    Expected { file: "zeek__http__missing-zlib-header.pcap", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0x98008ace6e5a437d, 79721), vs_tshark: SAME },
    Expected { file: "zeek__http__get_nosyn.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x9e58b9eed7b6ae80, 70248), vs_tshark: SAME },
    Expected { file: "zeek__http-vlan-0.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x9e58b9eed7b6ae80, 70248), vs_tshark: SAME },
    Expected { file: "zeek__http-qinq-0.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x9e58b9eed7b6ae80, 70248), vs_tshark: SAME },
    Expected { file: "cs__http_espn.pcapng", tshark: (61, 60), run: Run::read([60, 1, 0, 0, 0, 0], 0, 0x48f9c06ffe804936, 1919621), vs_tshark: SAME },
    Expected { file: "cs__http_espn_fail.pcapng", tshark: (7, 7), run: Run::read([7, 0, 0, 0, 0, 0], 0, 0xfdbcc2b324a2b578, 701456), vs_tshark: SAME },
    Expected { file: "cs__http_ip4and6.pcapng", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0x5102fdc57bd0a181, 2111), vs_tshark: SAME },
    Expected { file: "cs__http_post.pcapng", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0x70fbb9544533dc41, 2526723), vs_tshark: SAME },
    Expected { file: "tcpdump__print-flags.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x9ee293767f41bb68, 1809), vs_tshark: SAME },
    Expected { file: "lw__simple_http.pcap", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0xbcd74063b2b0b802, 6419), vs_tshark: SAME },
    Expected { file: "lw__simple_http_sll2.pcap", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0xbcd74063b2b0b802, 1983), vs_tshark: SAME },
    Expected { file: "zeek__http__no_crlf.pcap", tshark: (5, 5), run: Run::read([5, 0, 0, 0, 0, 0], 0, 0xc33ce6f594d9a7dc, 18863038), vs_tshark: SAME },
    Expected { file: "zeek__http__http-body-match.pcap", tshark: (10, 10), run: Run::read([10, 0, 0, 0, 0, 0], 0, 0x7dd51f33d8a7ec25, 4123294), vs_tshark: SAME },
    Expected { file: "zeek__http__100-continue.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x4a0698e298d61978, 907545), vs_tshark: SAME },
    Expected { file: "zeek__http__docker-http-upgrade.pcap", tshark: (6, 5), run: Run::read([6, 0, 0, 0, 0, 0], 0, 0xae8ba5c7d3a4fa3f, 31847114), vs_tshark: differs("tshark does not link the 101 Switching Protocols to its request; shadowd pairs it (nothing after it is parsed)") },
    Expected { file: "zeek__http__websocket.pcap", tshark: (1, 0), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0xf6b076c5e0f25963, 31633), vs_tshark: differs("tshark does not link the 101 Switching Protocols to its request; shadowd pairs it (nothing after it is parsed)") },
    Expected { file: "zeek__http__http-post-large.pcap", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0x07ebdef7e2220e01, 22557), vs_tshark: SAME },
    Expected { file: "zeek__http__putty-upload.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 1], 0, 0xb979c2376dda2424, 742), vs_tshark: SAME },
    Expected { file: "zeek__http__zeek-image-post-1080-8000-x.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x4a0698e298d61978, 18709), vs_tshark: SAME },
    Expected { file: "zeek__http__cooper-grill-dvwa.pcapng", tshark: (3, 3), run: Run::read([3, 0, 0, 0, 0, 0], 0, 0xad4976ae4f6a1da6, 23752), vs_tshark: SAME },
    Expected { file: "zeek__http__1000-requests-one-dropped-response.pcap", tshark: (1000, 999), run: Run::read([999, 1, 0, 0, 0, 0], 0, 0xff3456857d33e904, 47893), vs_tshark: SAME },
    Expected { file: "zeek__http__206_example_b.pcap", tshark: (3, 2), run: Run::read([3, 0, 0, 0, 0, 0], 0, 0xe00790adaeabe702, 1685375), vs_tshark: differs("tshark leaves the first 206 (816 KB, retransmitted and reordered segments) undissected; shadowd reassembles it whole") },
    Expected { file: "zeek__http__iso-download.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x2b587569a3f99024, 1217), vs_tshark: SAME },
    Expected { file: "ppp__http-packets.pcap", tshark: (112, 106), run: Run::read([106, 6, 0, 0, 0, 0], 0, 0xb2964c5cc571c5cc, 20174927), vs_tshark: SAME },
    Expected { file: "ppp__http-packets2.pcap", tshark: (57, 57), run: Run::read([57, 0, 0, 0, 0, 0], 1, 0x7d0b5c4d095f3650, 13184850), vs_tshark: SAME },
    Expected { file: "ppp__four_ipv6_http_streams.pcap", tshark: (9, 9), run: Run::read([9, 0, 0, 0, 0, 0], 0, 0xd813b7f7d7c891b8, 961469), vs_tshark: SAME },
    Expected { file: "ppp__one_ipv6_http_stream.pcap", tshark: (3, 3), run: Run::read([3, 0, 0, 0, 0, 0], 0, 0x690245595a9254ef, 176085), vs_tshark: SAME },
    Expected { file: "ppp__tcp-reassembly.pcap", tshark: (14, 14), run: Run::read([14, 0, 0, 0, 0, 0], 0, 0xf48f8229725497e7, 872117), vs_tshark: SAME },
    Expected { file: "ppp__three_http_streams.pcap", tshark: (3, 3), run: Run::read([3, 0, 0, 0, 0, 0], 0, 0x304a6a07bc21eafb, 144169), vs_tshark: SAME },
    Expected { file: "ppp__one_tcp_stream_max_seq.pcap", tshark: (2, 2), run: Run::read([2, 0, 0, 0, 0, 0], 0, 0x6a0249a84e39205d, 417447), vs_tshark: SAME },
    Expected { file: "zeek__http__concurrent-range-requests.pcap", tshark: (3, 2), run: Run::read([3, 0, 0, 0, 0, 0], 0, 0xeab4b6d96fb58b55, 157323), vs_tshark: differs("tshark does not reassemble the third 206 after its lost segment is retransmitted out of order; shadowd does (10001-byte body whole)") },
    Expected { file: "zeek__http__zero-length-bodies-with-drops.pcap", tshark: (7, 7), run: Run::read([7, 1, 0, 0, 0, 0], 1, 0xc6e56bfcbd50980a, 978837), vs_tshark: SAME },
    Expected { file: "ppp__4KHttpRequests.pcap", tshark: (139, 0), run: Run::read([0, 239, 0, 132, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "ppp__650HttpResponses.pcap", tshark: (0, 0), run: Run::read([0, 0, 0, 0, 0, 0], 422, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "ppp__unidirectional_tcp_stream_with_missing_packet.pcap", tshark: (1, 0), run: Run::read([0, 1, 0, 1, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "cs__latency1.pcapng", tshark: (1, 0), run: Run::read([0, 1, 0, 0, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "tcpdump__accecn_handshake.pcap", tshark: (1, 0), run: Run::read([0, 1, 0, 0, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "derived__pipelined-requests.snap200.pcap", tshark: (5, 5), run: Run::read([0, 5, 0, 0, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: differs("the snap length cuts every request: tshark dissects the cut heads, shadowd marks each exchange gap (never replayed); the Ethernet FCS no longer hides 4 of them") },
    Expected { file: "derived__pipelined-requests.nofcs.snap200.pcap", tshark: (5, 5), run: Run::read([0, 5, 0, 0, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: differs("the snap length cuts every request: tshark dissects the cut heads, shadowd marks each exchange gap (never replayed)") },
    Expected { file: "derived__http_espn.snap400.pcapng", tshark: (42, 42), run: Run::read([0, 61, 0, 0, 0, 0], 1, 0xcbf29ce484222325, 0), vs_tshark: differs("the snap length cuts most messages: tshark dissects the cut heads, shadowd marks each exchange gap (never replayed)") },
    Expected { file: "zeek__http__methods.pcap", tshark: (27, 27), run: Run::read([9, 0, 0, 0, 40, 0], 40, 0x58063b8fa9d5aa74, 315820), vs_tshark: differs("18 request lines that are not HTTP/1.x (`HTTP/1.` version, no SP around the target, no target) are unparsable; tshark dissects them") },
    Expected { file: "zeek__http__http-desync-request-response-5.pcap", tshark: (5, 5), run: Run::read([5, 0, 0, 0, 0, 0], 2, 0x38a2b56dbdb0bed0, 648), vs_tshark: SAME },
    Expected { file: "zeek__http__content-length-overflow.pcap", tshark: (1, 1), run: Run::read([0, 0, 0, 0, 0, 1], 0, 0xcbf29ce484222325, 0), vs_tshark: differs("the 200 announces 22000000000 bytes and the server closes after 100: incomplete (never replayed); tshark pairs the cut response") },
    Expected { file: "zeek__http__261__variant-01-chunk_2pow64_overflow.pcap", tshark: (1, 0), run: Run::read([0, 0, 0, 1, 1, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-02-cl_uint64max.pcap", tshark: (2, 0), run: Run::read([0, 0, 0, 1, 1, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-03-cl_negative.pcap", tshark: (2, 0), run: Run::read([0, 0, 0, 1, 1, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-04-te_cl_desync.pcap", tshark: (2, 0), run: Run::read([0, 0, 0, 1, 1, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-07-expect_100_cl0.pcap", tshark: (2, 0), run: Run::read([0, 0, 0, 2, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-08-leading_zeros.pcap", tshark: (2, 0), run: Run::read([0, 0, 0, 2, 0, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-09-te_obs_fold.pcap", tshark: (1, 0), run: Run::read([0, 0, 0, 1, 1, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__261__variant-10-multi_value_te.pcap", tshark: (2, 0), run: Run::read([0, 0, 0, 1, 1, 0], 0, 0xcbf29ce484222325, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__query-method.pcap", tshark: (0, 0), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0xab341ea187d2035c, 326), vs_tshark: differs("tshark does not know the QUERY method; shadowd parses it") },
    Expected { file: "zeek__http__http-bad-request-with-version.pcap", tshark: (0, 0), run: Run::read([1, 0, 0, 0, 1, 0], 0, 0xe98e330bc0729ebc, 737631), vs_tshark: differs("5 junk bytes before the request line: tshark gives up on the stream; shadowd counts the junk unparsable and resyncs at `GET /txt`") },
    Expected { file: "zeek__http__connect-with-smtp.pcap", tshark: (1, 1), run: Run::read([0, 0, 0, 0, 1, 0], 1, 0xcbf29ce484222325, 0), vs_tshark: differs("`CONNECT host:25 / HTTP/1.0` has an extra token: unparsable for shadowd, tshark takes it") },
    Expected { file: "zeek__http__no-uri.pcap", tshark: (1, 1), run: Run::read([0, 0, 0, 0, 1, 0], 1, 0xcbf29ce484222325, 0), vs_tshark: differs("`GET HTTP/1.1` has no target: unparsable for shadowd, tshark takes `HTTP/1.1` as the target") },
    Expected { file: "zeek__http__http-09-content-length-confusion.pcap", tshark: (1, 1), run: Run::read([0, 0, 0, 0, 1, 0], 1, 0xcbf29ce484222325, 0), vs_tshark: differs("an HTTP/0.9 request (`GET /`, no version) is unparsable for shadowd; tshark pairs it") },
    Expected { file: "cs__weather_working.pcapng", tshark: (1, 1), run: Run::read([0, 0, 0, 0, 1, 0], 1, 0xcbf29ce484222325, 0), vs_tshark: differs("version `HTTP/1.0.8` is unparsable for shadowd; tshark accepts it") },
    Expected { file: "ppp__one_http_stream_rst.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x83c450d45a47e6e6, 1749), vs_tshark: SAME },
    Expected { file: "zeek__nflog-http.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0x9ee293767f41bb68, 0), vs_tshark: SAME },
    Expected { file: "zeek__http__connect-with-header.pcap", tshark: (1, 1), run: Run::read([1, 0, 0, 0, 0, 0], 0, 0xfc8dad2eb6dcbb81, 120568), vs_tshark: SAME },
    Expected { file: "tcpdump__arcnet-rfc1051-arp-icmp-http.pcap", tshark: (1, 1), run: Run::Refused("link type ARCNET_LINUX, which shadowd does not read"), vs_tshark: differs("ARCNET link type not decoded: refused with exit 2 and a clear message") },
];

fn corpus_dir() -> PathBuf {
    match std::env::var_os("SHADOWTAP_PCAP_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcap_corpus"),
    }
}

/// `(file, ports)` of every capture the corpus README lists.
fn readme_files(dir: &Path) -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("corpus README.md");
    readme
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(".pcap"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let ports = cells[1].split(',').map(|p| p.trim().to_owned()).collect();
            (cells[0].to_owned(), ports)
        })
        .collect()
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What `inspect` reported, in the shape of [`Run`].
struct Actual {
    code: i32,
    stderr: String,
    outcomes: [u64; 6],
    orphans: u64,
    pairs: u64,
    latency_us: u64,
    complete: Vec<String>,
}

fn inspect(path: &Path, ports: &[String]) -> Actual {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowd"));
    cmd.arg("inspect").arg("--pcap").arg(path);
    for port in ports {
        cmd.args(["--port", port]);
    }
    let out = cmd.output().expect("run shadowd inspect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut outcomes = [0u64; 6];
    let mut complete = Vec::new();
    let mut latency_us = 0;
    for line in stdout.lines() {
        let e: Value = serde_json::from_str(line).expect("a JSON line per exchange");
        let outcome = e["outcome"].as_str().expect("outcome");
        let index = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or_else(|| panic!("unknown outcome {outcome}"));
        outcomes[index] += 1;
        if outcome == "complete" {
            let field = |k: &str| match &e[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            complete.push(format!(
                "{} {} {}",
                field("method"),
                field("path"),
                field("status")
            ));
            latency_us += e["latency_us"].as_u64().unwrap_or(0);
        }
    }
    complete.sort();
    let orphans = stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("orphan_responses="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Actual {
        code: out.status.code().unwrap_or(-1),
        pairs: fnv1a(complete.join("\n").as_bytes()),
        stderr,
        outcomes,
        orphans,
        latency_us,
        complete,
    }
}

#[test]
fn inspect_matches_the_hand_checked_results_on_every_corpus_capture() {
    let dir = corpus_dir();
    if !dir.join("README.md").is_file() {
        println!(
            "skipping the pcap corpus test: no corpus at {} (it lives in ../shared/pcap_corpus \
             next to the repository; set SHADOWTAP_PCAP_CORPUS to use another directory)",
            dir.display()
        );
        return;
    }
    let files = readme_files(&dir);
    let listed: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    let expected: Vec<&str> = CORPUS.iter().map(|e| e.file).collect();
    assert_eq!(
        listed, expected,
        "the README's captures and this test's table must list the same files, in order"
    );
    // The table itself: a file said to match tshark has tshark's number of paired requests as
    // complete exchanges; every difference has its one-line reason.
    for e in CORPUS {
        match (&e.vs_tshark, &e.run) {
            (Tshark::Same, Run::Read { outcomes, .. }) => {
                assert_eq!(
                    outcomes[0], e.tshark.1,
                    "{}: SAME but not tshark's count",
                    e.file
                )
            }
            (Tshark::Same, Run::Refused(_)) => panic!("{}: refused files differ", e.file),
            (Tshark::Differs(reason), _) => assert!(
                !reason.is_empty() && !reason.contains('\n'),
                "{}: one line",
                e.file
            ),
        }
    }
    let by_file: BTreeMap<&str, &Expected> = CORPUS.iter().map(|e| (e.file, e)).collect();
    let mut failures = Vec::new();
    for (file, ports) in &files {
        let want = by_file[file.as_str()];
        let got = inspect(&dir.join(file), ports);
        match want.run {
            Run::Read {
                outcomes,
                orphans,
                pairs,
                latency_us,
            } => {
                let show = |code: i32, outcomes: [u64; 6], orphans: u64, pairs: u64, lat: u64| {
                    format!(
                        "exit {code}, outcomes {outcomes:?}, orphans {orphans}, \
                         pairs {pairs:#018x}, latency_us {lat}"
                    )
                };
                let actual = show(
                    got.code,
                    got.outcomes,
                    got.orphans,
                    got.pairs,
                    got.latency_us,
                );
                let wanted = show(0, outcomes, orphans, pairs, latency_us);
                if actual != wanted {
                    failures.push(format!(
                        "{file}:\n  got      {actual}\n  expected {wanted}\n  \
                         (outcomes are {OUTCOMES:?})\n  complete: {:?}\n  stderr: {}",
                        got.complete, got.stderr
                    ));
                }
            }
            Run::Refused(message) => {
                if got.code != 2 || !got.stderr.contains(message) {
                    failures.push(format!(
                        "{file}: expected exit 2 with `{message}`, got exit {}: {}",
                        got.code, got.stderr
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn desync_capture_pairs_every_later_exchange_with_its_own_response() {
    let dir = corpus_dir();
    let file = dir.join("zeek__http__http-desync-request-response-5.pcap");
    if !file.is_file() {
        println!("skipping: {} not found", file.display());
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_shadowd"))
        .args(["inspect", "--port", "8080", "--pcap"])
        .arg(&file)
        .output()
        .expect("run shadowd inspect");
    let latencies: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).expect("JSON line");
            assert_eq!(e["outcome"], "complete", "{l}");
            e["latency_us"].as_u64().expect("latency")
        })
        .collect();
    // tshark: frame 16 (three responses) - frame 6 = 272 µs, then http.time of frames 26, 36,
    // 44, 50: 77, 78, 111, 110 µs. Before the fix the last four were 0 (answered by the extra
    // responses captured long before their requests).
    assert_eq!(latencies, [272, 77, 78, 111, 110]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("orphan_responses=2"),
        "the two extra responses are counted"
    );
}

#[test]
fn request_smuggling_variants_are_refused_by_reason() {
    let dir = corpus_dir();
    if !dir.join("README.md").is_file() {
        println!("skipping: no corpus at {}", dir.display());
        return;
    }
    // zeek's testing/btest/Traces/http/261: what is ambiguous is refused and named; a
    // Content-Length with leading zeros and a Content-Length 0 with Expect are not ambiguous.
    for (variant, refused) in [
        ("01-chunk_2pow64_overflow", Some("size_overflow")),
        ("02-cl_uint64max", Some("size_overflow")),
        ("03-cl_negative", Some("invalid_content_length")),
        ("04-te_cl_desync", Some("te_with_content_length")),
        ("07-expect_100_cl0", None),
        ("08-leading_zeros", None),
        ("09-te_obs_fold", Some("obs_fold")),
        ("10-multi_value_te", Some("not_chunked")),
    ] {
        let file = format!("zeek__http__261__variant-{variant}.pcap");
        let got = inspect(&dir.join(&file), &["80".to_owned()]);
        let section = got
            .stderr
            .split(" | ")
            .find_map(|s| s.strip_prefix("refused "))
            .unwrap_or_else(|| panic!("{file}: no refused section in {}", got.stderr));
        let nonzero: Vec<&str> = section
            .split_whitespace()
            .filter(|kv| !kv.ends_with("=0"))
            .collect();
        let want: Vec<String> = refused.iter().map(|r| format!("{r}=1")).collect();
        assert_eq!(nonzero, want, "{file}: {}", got.stderr);
    }
}
