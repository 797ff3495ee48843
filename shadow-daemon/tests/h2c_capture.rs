//! `shadowd inspect` on a real HTTP/2 conversation between peers nobody here wrote:
//! `tests/data/h2c_curl_nghttp_h2load.pcap`, captured with tcpdump on `lo` (port 18080) while
//! nghttpd 1.52.0 (`--no-tls --echo-upload`) served
//!
//! - curl 7.88.1 `--http2-prior-knowledge`: four connections, one stream each (GET
//!   `/ready.json` (26 bytes), POST `/v2/models/m/infer` echoed back, GET `/missing` → 404, GET `/big.bin`
//!   of 40000 bytes in several DATA frames);
//! - `nghttp -n` (1.52.0): one connection, PRIORITY frames opening idle streams 3–11 for its
//!   dependency tree, then streams 13, 15, 17 at once;
//! - `h2load -n 12 -c 1 -m 4`: twelve streams, four at a time, HPACK indexing their repeated
//!   fields.
//!
//! The expected values were read with tshark 4.0.17, not from our own output:
//! `tshark -r F -d tcp.port==18080,http2 -Y 'http2.type == 1' -T fields -e tcp.stream
//! -e http2.streamid -e http2.headers.method -e http2.headers.path -e http2.headers.status`
//! for the heads, and the DATA frames' `http2.length` summed per stream and direction for the
//! body lengths (no padding in this capture).

use serde_json::Value;
use std::process::Command;

#[test]
fn a_real_h2c_capture_yields_every_stream_as_tshark_does() {
    let pcap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/h2c_curl_nghttp_h2load.pcap"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_shadowd"))
        .args(["inspect", "--pcap", pcap, "--port", "18080"])
        .output()
        .expect("run shadowd inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut got: Vec<(String, String, u64, u64, u64)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["protocol"], "h2", "{l}");
            assert_eq!(l["outcome"], "complete", "{l}");
            assert!(l["latency_us"].as_u64().is_some(), "{l}");
            (
                l["method"].as_str().unwrap().to_string(),
                l["path"].as_str().unwrap().to_string(),
                l["status"].as_u64().unwrap(),
                l["request_body_len"].as_u64().unwrap(),
                l["response_body_len"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    // tshark: 19 request HEADERS, each answered.
    let ready = ("GET".to_string(), "/ready.json".to_string(), 200, 0, 26);
    let mut want = vec![ready; 14];
    want.extend([
        ("GET".into(), "/big.bin".into(), 200, 0, 40_000),
        ("GET".into(), "/big.bin".into(), 200, 0, 40_000),
        ("GET".into(), "/missing".into(), 404, 0, 148),
        ("GET".into(), "/missing".into(), 404, 0, 148),
        ("POST".into(), "/v2/models/m/infer".into(), 200, 18, 18),
    ]);
    want.sort();
    assert_eq!(got, want);
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(summary.contains("exchanges complete=19 gap=0"), "{summary}");
    assert!(summary.contains("flows=6"), "{summary}");
    assert!(
        summary.contains("h2_frame=0 hpack=0 h2_malformed=0"),
        "{summary}"
    );
}
