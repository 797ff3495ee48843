//! What BPF programs and tc filters are attached to an interface: for checking that a
//! stopped (or SIGKILLed) daemon left nothing behind.
//!
//! Three sources, because no single tool sees everything on every version:
//! - TCX links: asked from the kernel with `bpf(BPF_PROG_QUERY)` (bpftool 7.1, installed
//!   here, predates TCX and does not list TCX links in `net show`);
//! - netlink clsact filters (the fallback attach path): `tc -j filter show dev IF ingress|egress`;
//! - XDP and tc programs as `bpftool net show dev IF -j` reports them, when bpftool exists.
//!
//! All of them look at the calling thread's network namespace: call them inside
//! [`NetNs::run`](crate::netns::NetNs::run) for an interface in a test namespace.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

/// `enum bpf_attach_type` values (linux/bpf.h, 6.6+).
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// `enum bpf_cmd` values.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

/// Size of the `union bpf_attr` buffer passed to the kernel (zero-filled past the fields used).
const ATTR_SIZE: usize = 128;

fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a writable buffer of ATTR_SIZE bytes laid out as `union bpf_attr`.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn put_u32(attr: &mut [u8; ATTR_SIZE], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; ATTR_SIZE], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn ifindex(iface: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(io::Error::from)
}

/// Number of programs attached through TCX in each direction (`(ingress, egress)`).
/// `Ok((0, 0))` on kernels without TCX.
pub fn tcx_program_counts(iface: &str) -> io::Result<(u32, u32)> {
    let ifindex = ifindex(iface)?;
    let mut counts = [0u32; 2];
    for (count, attach_type) in counts.iter_mut().zip([BPF_TCX_INGRESS, BPF_TCX_EGRESS]) {
        let mut attr = [0u8; ATTR_SIZE];
        put_u32(&mut attr, 0, ifindex); // query.target_ifindex
        put_u32(&mut attr, 4, attach_type); // query.attach_type
        match bpf(BPF_PROG_QUERY, &mut attr) {
            // query.prog_cnt: with no id buffer the kernel only reports the count.
            Ok(_) => *count = u32::from_ne_bytes(attr[24..28].try_into().expect("4 bytes")),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok((0, 0)),
            Err(e) => return Err(e),
        }
    }
    Ok((counts[0], counts[1]))
}

/// Filters in the clsact `ingress` and `egress` hooks, one JSON object per filter as
/// `tc -j filter show` prints them. Empty when there is no clsact qdisc.
pub fn tc_filters(iface: &str) -> io::Result<Vec<serde_json::Value>> {
    let mut filters = Vec::new();
    for hook in ["ingress", "egress"] {
        let out = Command::new("tc")
            .args(["-j", "filter", "show", "dev", iface, hook])
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "tc filter show dev {iface} {hook}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if stdout.trim().is_empty() {
            continue;
        }
        let parsed: serde_json::Value = serde_json::from_str(&stdout)
            .map_err(|e| io::Error::other(format!("tc -j output {stdout:?}: {e}")))?;
        let list = parsed
            .as_array()
            .ok_or_else(|| io::Error::other(format!("tc -j output is not a list: {stdout}")))?;
        filters.extend(list.iter().cloned());
    }
    Ok(filters)
}

/// Where bpftool is, if installed.
pub fn bpftool() -> Option<&'static Path> {
    [
        "/usr/sbin/bpftool",
        "/usr/bin/bpftool",
        "/usr/local/sbin/bpftool",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
}

/// XDP and tc programs that `bpftool net show dev IF -j` lists (`None` without bpftool).
pub fn bpftool_net_programs(iface: &str) -> io::Result<Option<Vec<serde_json::Value>>> {
    let Some(tool) = bpftool() else {
        return Ok(None);
    };
    let out = Command::new(tool)
        .args(["net", "show", "dev", iface, "-j"])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "bpftool net show dev {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_bpftool_net(&String::from_utf8_lossy(&out.stdout)).map(Some)
}

/// The entries of every program list (`xdp`, `tc`, `tcx`…) in `bpftool net show -j` output:
/// `[{"xdp":[…],"tc":[…],"flow_dissector":[…],…}]`. Strict: other shapes are an error.
pub fn parse_bpftool_net(json: &str) -> io::Result<Vec<serde_json::Value>> {
    let bad = |why: &str| io::Error::other(format!("bpftool net output ({why}): {json}"));
    let parsed: serde_json::Value = serde_json::from_str(json).map_err(|_| bad("not JSON"))?;
    let mut programs = Vec::new();
    for section in parsed.as_array().ok_or_else(|| bad("not a list"))? {
        let section = section.as_object().ok_or_else(|| bad("not objects"))?;
        if !section.contains_key("xdp") || !section.contains_key("tc") {
            return Err(bad("no xdp/tc lists"));
        }
        for (kind, list) in section {
            // Flow dissectors and netfilter hooks are per namespace, not per interface.
            if kind == "flow_dissector" || kind == "netfilter" {
                continue;
            }
            let list = list
                .as_array()
                .ok_or_else(|| bad("program list not a list"))?;
            programs.extend(list.iter().cloned());
        }
    }
    Ok(programs)
}

/// Descriptions of everything attached to `iface` (TCX, clsact filters, XDP/tc per
/// bpftool); empty when nothing is.
pub fn attached(iface: &str) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    let (ingress, egress) = tcx_program_counts(iface)?;
    if ingress > 0 {
        found.push(format!("{ingress} TCX ingress program(s)"));
    }
    if egress > 0 {
        found.push(format!("{egress} TCX egress program(s)"));
    }
    found.extend(
        tc_filters(iface)?
            .into_iter()
            .map(|f| format!("tc filter {f}")),
    );
    if let Some(programs) = bpftool_net_programs(iface)? {
        found.extend(programs.into_iter().map(|p| format!("bpftool net: {p}")));
    }
    Ok(found)
}

/// Panics listing whatever is still attached to `iface`. A link whose last fd was just
/// closed can outlive the close briefly (a process forked at that moment holds the fd until
/// it execs; the kernel frees links in deferred work), so detachment is awaited, bounded.
pub fn assert_nothing_attached(iface: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut found = attached(iface).unwrap_or_else(|e| panic!("inspecting {iface}: {e}"));
    while !found.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        found = attached(iface).unwrap_or_else(|e| panic!("inspecting {iface}: {e}"));
    }
    assert!(
        found.is_empty(),
        "left attached to {iface}:\n  {}",
        found.join("\n  ")
    );
}

/// Loads a two-instruction classifier (`return TC_ACT_OK`) and attaches it to `iface`
/// through a TCX link; the link (and the attachment) lives as long as the returned fd.
/// For testing the detectors above against a real attachment.
pub fn attach_pass_through_tcx(iface: &str, ingress: bool) -> io::Result<OwnedFd> {
    let ifindex = ifindex(iface)?;
    // r0 = 0; exit
    let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]), 0x95];
    let license = c"GPL";
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
    put_u32(&mut attr, 4, insns.len() as u32);
    put_u64(&mut attr, 8, insns.as_ptr() as u64);
    put_u64(&mut attr, 16, license.as_ptr() as u64);
    let prog_fd = bpf(BPF_PROG_LOAD, &mut attr)? as i32;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let prog = unsafe { OwnedFd::from_raw_fd(prog_fd) };
    let mut attr = [0u8; ATTR_SIZE];
    put_u32(&mut attr, 0, prog_fd as u32); // link_create.prog_fd
    put_u32(&mut attr, 4, ifindex); // link_create.target_ifindex
    put_u32(
        &mut attr,
        8,
        if ingress {
            BPF_TCX_INGRESS
        } else {
            BPF_TCX_EGRESS
        },
    );
    let link_fd = bpf(BPF_LINK_CREATE, &mut attr)? as i32;
    drop(prog);
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(link_fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftool_net_json_is_parsed_strictly() {
        let empty = r#"[{"xdp":[],"tc":[],"flow_dissector":[],"netfilter":[]}]"#;
        assert!(parse_bpftool_net(empty).unwrap().is_empty());
        let one = r#"[{"xdp":[],"tc":[{"devname":"lo","ifindex":1,"kind":"clsact/ingress","name":"shadowtap","id":42}],"flow_dissector":[{"id":7}],"netfilter":[]}]"#;
        let found = parse_bpftool_net(one).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["id"], 42);
        assert!(parse_bpftool_net("").is_err());
        assert!(parse_bpftool_net(r#"{"xdp":[]}"#).is_err());
        assert!(parse_bpftool_net(r#"[{"foo":[]}]"#).is_err());
    }
}
