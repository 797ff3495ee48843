//! `shadowd inspect` as a user runs it: output on stdout, summary on stderr, exit codes.

use shadow_core::frame::LinkType;
use shadow_core::testkit::{self, Conn};
use std::process::Command;

fn shadowd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowd"))
        .args(args)
        .output()
        .expect("run shadowd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_exchanges_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pcapng");
    let mut c = Conn::new("127.0.0.1:50000", "127.0.0.1:8080");
    c.handshake()
        .request(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        .close();
    std::fs::write(
        &path,
        testkit::pcapng_bytes(LinkType::LinuxSll2, c.segments(), false),
    )
    .unwrap();
    let (code, stdout, stderr) = shadowd(&[
        "inspect",
        "--pcap",
        path.to_str().unwrap(),
        "--port",
        "8080",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "{\"flow\":\"127.0.0.1:50000 -> 127.0.0.1:8080\",\"grpc_status\":null,\"latency_us\":1,\"method\":\"GET\",\"outcome\":\"complete\",\"path\":\"/v1/models\",\"protocol\":\"http1\",\"request_body_len\":0,\"response_body_len\":2,\"status\":200}\n"
    );
    assert!(stderr.contains("exchanges complete=1 gap=0"), "{stderr}");
}

#[test]
fn file_problems_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let (code, _, stderr) = shadowd(&[
        "inspect",
        "--pcap",
        missing.to_str().unwrap(),
        "--port",
        "80",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot open") && stderr.contains("missing.pcap"),
        "{stderr}"
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello, not a capture").unwrap();
    let (code, _, stderr) = shadowd(&["inspect", "--pcap", text.to_str().unwrap(), "--port", "80"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a pcap or pcapng file"), "{stderr}");

    let arcnet = dir.path().join("arcnet.pcap");
    let mut bytes = testkit::pcap_bytes_with(LinkType::Ethernet, &[], 65535);
    bytes[20..24].copy_from_slice(&7u32.to_be_bytes()); // ARCNET (BSD)
    std::fs::write(&arcnet, bytes).unwrap();
    let (code, _, stderr) = shadowd(&[
        "inspect",
        "--pcap",
        arcnet.to_str().unwrap(),
        "--port",
        "80",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("link type ARCNET_BSD"), "{stderr}");

    let (code, _, stderr) = shadowd(&[
        "inspect",
        "--pcap",
        dir.path().to_str().unwrap(),
        "--port",
        "80",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_file_cut_mid_packet_is_read_up_to_the_cut_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    let mut c = Conn::new("127.0.0.1:50000", "127.0.0.1:8080");
    c.handshake()
        .request(b"GET /a HTTP/1.1\r\n\r\n")
        .response(b"HTTP/1.1 204 No Content\r\n\r\n")
        .request(b"GET /b HTTP/1.1\r\n\r\n");
    let bytes = testkit::pcap_bytes(c.segments());
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let (code, stdout, stderr) = shadowd(&[
        "inspect",
        "--pcap",
        path.to_str().unwrap(),
        "--port",
        "8080",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("\"path\":\"/a\""), "{stdout}");
    assert!(
        stderr.contains("shadowd: warning: truncated file after 5 packets: "),
        "{stderr}"
    );
    assert!(!stderr.contains("not a pcap"), "{stderr}");
}
