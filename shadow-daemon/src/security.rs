//! Secure defaults checked before `shadowd` does anything privileged: who may change its config
//! and token files, where it writes, and the admin API's bearer token (read from a file, never
//! from the command line; compared in constant time). See docs/security.md.
//!
//! - A config file or token file that a group or other users can write is refused: whoever
//!   can write the config can make the privileged daemon run a command (`[rollback]`) or send
//!   production's requests anywhere; whoever can write the token file can let themselves in.
//! - A token file others can read is refused too: it would be no secret.
//! - A world-writable directory (even with the sticky bit, as `/tmp`) is refused for the files
//!   shadowd writes (discrepancy log with its rotations, state file): another user could plant
//!   or swap the names shadowd is about to open.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Shortest bearer token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;
/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;
/// How to make a good token, for messages.
const MAKE_TOKEN: &str = "head -c 32 /dev/urandom | base64 > FILE && chmod 600 FILE";

/// A file or directory shadowd refuses to use, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The file's or directory's metadata cannot be read.
    #[error("cannot check the permissions of the {what} {}", path.display())]
    Stat {
        /// What the file is for (`config file`, `admin token file`, …).
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A group or other users can write the file.
    #[error(
        "the {what} {} is writable by {} (mode {mode:04o}): whoever can write it controls \
         shadowd, which runs privileged. Run `chmod go-w {}` (and make sure its owner is \
         trusted)",
        path.display(), writers(*mode), path.display()
    )]
    WritableByOthers {
        what: &'static str,
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// Users outside the file's group can read the token.
    #[error(
        "the admin token file {} is readable by other users (mode {mode:04o}), so its token is \
         no secret: run `chmod 600 {}` (or 640 to share it with the file's group)",
        path.display(), path.display()
    )]
    TokenReadableByOthers {
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// The token file cannot be read.
    #[error("cannot read the admin token file {}", path.display())]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error(
        "the admin token file {} {why}: put one line of at least {MIN_TOKEN_LEN} printable \
         characters in it, e.g. `{MAKE_TOKEN}`",
        path.display()
    )]
    BadToken {
        path: PathBuf,
        /// What is wrong with its contents.
        why: String,
    },
    /// Other users can write the directory shadowd writes a file into.
    #[error(
        "the {what} is to be written in {}, a directory every user can write (mode {mode:04o}): \
         another user could put a file or link of their own under the name shadowd opens. Put \
         it in a directory only shadowd's user can write (e.g. /var/lib/shadowtap, made with \
         `mkdir -m 750`), or run `chmod o-w {}`",
        dir.display(), dir.display()
    )]
    WorldWritableDirectory {
        what: &'static str,
        dir: PathBuf,
        /// The directory's permission bits.
        mode: u32,
    },
}

/// Who besides the owner may write, from permission bits.
fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and every user",
        (true, false) => "its group",
        _ => "every user",
    }
}

fn mode_of(path: &Path, what: &'static str) -> Result<u32, SecurityError> {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|source| SecurityError::Stat {
            what,
            path: path.to_path_buf(),
            source,
        })
}

/// Refuses `path` (a config or token file; symlinks followed) if a group or other users can
/// write it. `what` names it in the error (`"config file"`).
pub fn refuse_writable_by_others(path: &Path, what: &'static str) -> Result<(), SecurityError> {
    let mode = mode_of(path, what)?;
    if mode & 0o022 != 0 {
        return Err(SecurityError::WritableByOthers {
            what,
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Refuses to write `file` (the discrepancy log, the state file) into a directory every user
/// can write. A directory that does not exist yet is left to the open that follows, which
/// reports it.
pub fn refuse_world_writable_dir(file: &Path, what: &'static str) -> Result<(), SecurityError> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mode = match std::fs::metadata(dir) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SecurityError::Stat {
                what,
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    if mode & 0o002 != 0 {
        return Err(SecurityError::WorldWritableDirectory {
            what,
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Whether `addr` is reachable from this host only (127.0.0.0/8, `::1`, or `::ffff:127.x`).
/// The unspecified address (`0.0.0.0`, `::`) is every interface: not loopback.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// The admin API's bearer token. Only its SHA-256 is kept; a presented token is hashed too and
/// the digests compared in constant time, so neither the token's bytes nor its length can be
/// learnt from how long a refusal takes.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Reads the token from `path` ([`read_token_secret`]).
    pub fn read(path: &Path) -> Result<AdminToken, SecurityError> {
        let secret = read_token_secret(path)?;
        Ok(AdminToken {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// The token `secret` (checked as a token file's line is).
    pub fn from_secret(secret: &str) -> Result<AdminToken, String> {
        check_secret(secret)?;
        Ok(AdminToken {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token (constant time in the token; `presented` is hashed
    /// whatever its length).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        constant_time_eq(&self.digest, &digest)
    }

    /// Whether an `Authorization` header value is `Bearer <the token>` (the scheme in any case).
    pub fn authorizes(&self, authorization: &[u8]) -> bool {
        bearer_credentials(authorization).is_some_and(|t| self.matches(t))
    }
}

/// Reads a token file (the server's `admin.token_file`, or a client's copy): the file must not
/// be writable by its group or others nor readable by others; its one line, without
/// surrounding whitespace, is the token: at least [`MIN_TOKEN_LEN`] printable ASCII characters.
pub fn read_token_secret(path: &Path) -> Result<String, SecurityError> {
    const WHAT: &str = "admin token file";
    refuse_writable_by_others(path, WHAT)?;
    let mode = mode_of(path, WHAT)?;
    if mode & 0o007 != 0 {
        return Err(SecurityError::TokenReadableByOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    let read_error = |source| SecurityError::ReadToken {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    let bad = |why: &str| SecurityError::BadToken {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(bad("is larger than 4 KiB"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not text"))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let token = lines.next().ok_or_else(|| bad("is empty"))?;
    if lines.next().is_some() {
        return Err(bad("has more than one line"));
    }
    check_secret(token).map_err(|why| bad(&why))?;
    Ok(token.to_string())
}

/// Whether `secret` can be a token: long enough, and sendable in a header.
fn check_secret(secret: &str) -> Result<(), String> {
    if secret.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "holds a token of {} characters, too short to resist guessing",
            secret.len()
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "holds a token with spaces or non-ASCII characters, which cannot be sent \
                    in an Authorization header"
                .into(),
        );
    }
    Ok(())
}

/// The credentials of `Bearer <credentials>` (RFC 6750: the scheme is case-insensitive).
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares two digests without stopping at the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn file_with_mode(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn files_writable_by_group_or_others_are_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o644, 0o640, 0o400, 0o755] {
            let path = file_with_mode(dir.path(), "ok.toml", "", mode);
            refuse_writable_by_others(&path, "config file")
                .unwrap_or_else(|e| panic!("{mode:o}: {e}"));
        }
        for (mode, who) in [
            (0o664, "its group"),
            (0o646, "every user"),
            (0o666, "its group and every user"),
            (0o620, "its group"),
        ] {
            let path = file_with_mode(dir.path(), "bad.toml", "", mode);
            let err = refuse_writable_by_others(&path, "config file").unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, SecurityError::WritableByOthers { mode: m, .. } if m == mode),
                "{text}"
            );
            assert!(text.contains(&format!("writable by {who} ")), "{text}");
            assert!(
                text.contains(&format!("chmod go-w {}", path.display())),
                "{text}"
            );
            assert!(text.contains("config file"), "{text}");
        }
        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            refuse_writable_by_others(&missing, "config file"),
            Err(SecurityError::Stat { .. })
        ));
    }

    #[test]
    fn a_world_writable_directory_is_refused_even_with_the_sticky_bit() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let log = sub.join("discrepancies.jsonl");
        for mode in [0o700, 0o750, 0o755, 0o770] {
            std::fs::set_permissions(&sub, Permissions::from_mode(mode)).unwrap();
            refuse_world_writable_dir(&log, "discrepancy log")
                .unwrap_or_else(|e| panic!("{mode:o}: {e}"));
        }
        for mode in [0o777, 0o1777, 0o703] {
            std::fs::set_permissions(&sub, Permissions::from_mode(mode)).unwrap();
            let err = refuse_world_writable_dir(&log, "discrepancy log").unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, SecurityError::WorldWritableDirectory { dir, .. } if *dir == sub),
                "{text}"
            );
            assert!(text.contains("discrepancy log"), "{text}");
            assert!(
                text.contains(&format!("chmod o-w {}", sub.display())),
                "{text}"
            );
        }
        // A directory not made yet is for the open to report.
        refuse_world_writable_dir(&dir.path().join("no/such/dir/log"), "discrepancy log").unwrap();
        // /tmp itself (1777) is refused for a bare file name in it.
        let tmp_mode = std::fs::metadata("/tmp").unwrap().permissions().mode();
        if tmp_mode & 0o002 != 0 {
            assert!(
                refuse_world_writable_dir(Path::new("/tmp/d.jsonl"), "discrepancy log").is_err()
            );
        }
    }

    #[test]
    fn loopback_addresses_are_told_from_the_rest() {
        for local in [
            "127.0.0.1:9464",
            "127.3.2.1:1",
            "[::1]:9464",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback(&local.parse().unwrap()), "{local}");
        }
        for public in [
            "0.0.0.0:9464",
            "[::]:9464",
            "10.0.0.2:9464",
            "[::ffff:10.0.0.2]:1",
        ] {
            assert!(!is_loopback(&public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_token_is_read_from_a_private_file_and_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "s3cret-token-0123456789";
        let path = file_with_mode(dir.path(), "token", &format!("{secret}\n"), 0o600);
        let token = AdminToken::read(&path).unwrap();
        assert!(token.matches(secret.as_bytes()));
        assert!(!token.matches(b"s3cret-token-012345678"), "a prefix");
        assert!(!token.matches(b"s3cret-token-01234567890"), "longer");
        assert!(!token.matches(b"S3cret-token-0123456789"), "case matters");
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "AdminToken(..)", "never printed");
        assert_eq!(
            AdminToken::read(&file_with_mode(dir.path(), "t2", secret, 0o640)).unwrap(),
            token,
            "group-readable is allowed, the trailing newline is not part of it"
        );

        let header = |v: &str| token.authorizes(v.as_bytes());
        assert!(header(&format!("Bearer {secret}")));
        assert!(header(&format!("bearer {secret}")));
        assert!(header(&format!("BEARER  {secret} ")));
        assert!(!header(secret), "no scheme");
        assert!(!header(&format!("Basic {secret}")));
        assert!(!header(&format!("Bearer{secret}")));
        assert!(!header("Bearer "));
        assert!(!header(&format!("Bearer {secret}x")));
    }

    #[test]
    fn unsafe_or_unusable_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = "0123456789abcdef0123";
        let err = |name: &str, text: &str, mode: u32| {
            AdminToken::read(&file_with_mode(dir.path(), name, text, mode)).unwrap_err()
        };
        assert!(matches!(
            err("a", good, 0o620),
            SecurityError::WritableByOthers { .. }
        ));
        let readable = err("b", good, 0o604);
        assert!(
            matches!(
                readable,
                SecurityError::TokenReadableByOthers { mode: 0o604, .. }
            ),
            "{readable}"
        );
        assert!(readable.to_string().contains("chmod 600"), "{readable}");
        for (text, why) in [
            ("", "is empty"),
            ("\n  \n", "is empty"),
            ("short", "too short"),
            ("0123456789 abcdef0123", "spaces"),
            ("0123456789abcdef\nsecond-line-here", "more than one line"),
        ] {
            let e = err("c", text, 0o600).to_string();
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(e.contains("head -c 32 /dev/urandom"), "{e}");
        }
        let big = "x".repeat(5000);
        assert!(
            err("d", &big, 0o600)
                .to_string()
                .contains("larger than 4 KiB")
        );
        assert!(matches!(
            AdminToken::read(&dir.path().join("none")),
            Err(SecurityError::Stat { .. })
        ));
    }

    #[test]
    fn digests_are_compared_whole() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }
}
