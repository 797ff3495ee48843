//! Discrepancy log: one JSON line per comparison that differs, written by a background thread
//! to a file created with mode 0600 and rotated at a size cap (`path.1` .. `path.N`).
//!
//! Each line holds the time, the connection and the protocol the exchange came in (`http1`,
//! `h2`, `grpc`), the request (method, target, redacted headers, body sha256 and
//! the body itself up to `body_max_bytes`), both statuses, latencies and predictions, and the
//! field diff; with a noise baseline also `noise` (whether the whole discrepancy is
//! production's own nondeterminism) and `noisy_paths` (the diff's paths that are). Headers `Authorization`, `Cookie`, `Set-Cookie`, `Proxy-Authorization` and the
//! configured ones are replaced by `[REDACTED]`; configured JSON fields are redacted in the
//! request body and in the diff values. A non-JSON body cannot be field-redacted: when
//! `redact_fields` is set, such bodies are left out (only their sha256 is logged).

use crate::admission::Job;
use crate::config::DiscrepancyLogConfig;
use crate::mirror::DiscrepancySink;
use crate::telemetry::Telemetry;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shadow_core::compare::{
    Comparison, DiscrepancyKind, ErrorClass, FieldDiff, PathPattern, Prediction,
};
use shadow_core::grpc::GrpcStatus;
use shadow_core::http::{Header, Protocol};
use shadow_core::noise::NoiseVerdict;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Headers always redacted.
pub const DEFAULT_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// Lines buffered between the replay workers and the writer thread; beyond, lines are dropped
/// and counted (`shadowtap_discrepancy_log_dropped_total`).
const WRITER_QUEUE: usize = 1024;

/// Replaces secrets in headers and JSON bodies.
#[derive(Clone, Debug)]
pub struct Redactor {
    headers: Vec<String>,
    fields: Vec<PathPattern>,
}

impl Redactor {
    /// The defaults plus the configured headers and fields.
    pub fn new(c: &DiscrepancyLogConfig) -> Self {
        let mut headers: Vec<String> = DEFAULT_REDACTED_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        headers.extend(c.redact_headers.iter().map(|h| h.as_str().to_string()));
        Redactor {
            headers,
            fields: c.redact_fields.clone(),
        }
    }

    /// Header name/value pairs with secrets replaced.
    pub fn headers(&self, headers: &[Header]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                let value = if self.headers.contains(&h.name.to_ascii_lowercase()) {
                    REDACTED.to_string()
                } else {
                    String::from_utf8_lossy(&h.value).into_owned()
                };
                (h.name.clone(), value)
            })
            .collect()
    }

    /// Whether any body field is redacted.
    pub fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Redacts the configured fields of a JSON value in place.
    pub fn json(&self, v: &mut Value) {
        if self.has_fields() {
            let mut path = Vec::new();
            self.walk(v, &mut path);
        }
    }

    fn walk(&self, v: &mut Value, path: &mut Vec<String>) {
        if self.fields.iter().any(|f| f.matches(path)) {
            *v = Value::String(REDACTED.into());
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    path.push(k.clone());
                    self.walk(child, path);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter_mut().enumerate() {
                    path.push(i.to_string());
                    self.walk(child, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Redacts diff values at (or below) redacted fields.
    pub fn diffs(&self, diffs: &mut [FieldDiff]) {
        for d in diffs {
            let segs = PathPattern::parse(&d.path);
            // A diff at or below a redacted field.
            let hit = self
                .fields
                .iter()
                .any(|f| f.matches_prefix(segs.segments()));
            if hit {
                for v in [&mut d.production, &mut d.shadow].into_iter().flatten() {
                    *v = Value::String(REDACTED.into());
                }
            } else {
                for v in [&mut d.production, &mut d.shadow].into_iter().flatten() {
                    self.json(v);
                }
            }
        }
    }
}

/// The request part of a line.
#[derive(Debug, Serialize)]
pub struct RequestRecord {
    pub method: String,
    /// Request target as sent: path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_sha256: String,
    pub body_len: usize,
    /// `json` (parsed, redacted), `utf8`, `base64`, or `omitted`.
    pub body_encoding: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    pub body_truncated: bool,
}

/// One model's part of a line.
#[derive(Debug, Serialize)]
pub struct SideRecord {
    pub status: Option<u16>,
    /// A gRPC call's status (code, name, message, where it was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<GrpcStatus>,
    pub error: Option<ErrorClass>,
    pub latency_ms: Option<f64>,
    pub prediction: Option<Prediction>,
}

/// One line of the discrepancy log.
#[derive(Debug, Serialize)]
pub struct Record {
    /// RFC 3339 UTC time the comparison finished.
    pub time: String,
    pub flow: String,
    /// The protocol the exchange came in: `http1`, `h2` or `grpc`.
    pub protocol: Protocol,
    pub request: RequestRecord,
    pub production: SideRecord,
    pub shadow: SideRecord,
    pub agreement: Option<bool>,
    pub discrepancies: Vec<DiscrepancyKind>,
    pub diff: Vec<FieldDiff>,
    /// With a noise baseline: whether the whole discrepancy is production's own noise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<bool>,
    /// With a noise baseline: the diff's paths (normalised, array indices as `*`) where
    /// production differs from the baseline too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noisy_paths: Option<Vec<String>>,
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn side(s: &shadow_core::compare::Side) -> SideRecord {
    SideRecord {
        status: s.status,
        grpc_status: s.grpc_status.clone(),
        error: s.error,
        latency_ms: s.latency_ns.map(|ns| ns as f64 / 1e6),
        prediction: s.prediction.clone(),
    }
}

impl Record {
    /// The line for `comparison` of `job` (with the noise baseline's verdict, if any), redacted.
    pub fn new(
        job: &Job,
        comparison: &Comparison,
        noise: Option<&NoiseVerdict>,
        redactor: &Redactor,
        body_max_bytes: usize,
        now_ns: u64,
    ) -> Record {
        let req = &job.request;
        let body = req.body.clone();
        let (body_encoding, body_value, body_truncated) = if body_max_bytes == 0 {
            ("omitted", None, !body.is_empty())
        } else if let Ok(mut v) = serde_json::from_slice::<Value>(&body)
            && body.len() <= body_max_bytes
        {
            redactor.json(&mut v);
            ("json", Some(v), false)
        } else if redactor.has_fields() {
            ("omitted", None, !body.is_empty())
        } else {
            let cut = &body[..body.len().min(body_max_bytes)];
            let truncated = cut.len() < body.len();
            match std::str::from_utf8(cut) {
                Ok(s) => ("utf8", Some(Value::String(s.to_string())), truncated),
                Err(_) => (
                    "base64",
                    Some(Value::String(
                        base64::engine::general_purpose::STANDARD.encode(cut),
                    )),
                    truncated,
                ),
            }
        };
        let mut diff = comparison.diffs.clone();
        redactor.diffs(&mut diff);
        Record {
            time: rfc3339(now_ns),
            flow: job.flow.to_string(),
            protocol: job.protocol,
            request: RequestRecord {
                method: req.method.clone(),
                path: req.target.clone(),
                headers: redactor.headers(&req.headers),
                body_sha256: sha256_hex(&body),
                body_len: body.len(),
                body_encoding,
                body: body_value,
                body_truncated,
            },
            production: side(&comparison.production),
            shadow: side(&comparison.shadow),
            agreement: comparison.agreement,
            discrepancies: comparison.discrepancies.clone(),
            diff,
            noise: noise.map(|v| v.noise),
            noisy_paths: noise.map(|v| v.noisy_paths.clone()),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for ns since the Unix epoch.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns % 1_000_000_000) / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// An append-only file with mode 0600 that rotates at `max_bytes`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: File,
    size: u64,
}

fn open_0600(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: tighten it.
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

impl RotatingFile {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<Self> {
        let file = open_0600(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            max_files,
            file,
            size,
        })
    }

    fn rotated(&self, i: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{i}"));
        p.into()
    }

    /// Appends one line (a newline is added), rotating first if it would pass the cap.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.max_files));
            for i in (1..self.max_files).rev() {
                let from = self.rotated(i);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(i + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = open_0600(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The discrepancy log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open discrepancy log `{}`: {source}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// What is redacted from each line and how much of a request body is kept: shared by the log
/// and its writers, replaced by a reload ([`Redaction::set`]).
#[derive(Clone, Debug)]
pub struct Redaction(Arc<std::sync::RwLock<(Arc<Redactor>, usize)>>);

impl Redaction {
    fn new(c: &DiscrepancyLogConfig) -> Self {
        Redaction(Arc::new(std::sync::RwLock::new((
            Arc::new(Redactor::new(c)),
            c.body_max_bytes,
        ))))
    }

    /// Applies a reloaded `redact_headers`, `redact_fields` and `body_max_bytes` to the lines
    /// written from now on.
    pub fn set(&self, c: &DiscrepancyLogConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) =
            (Arc::new(Redactor::new(c)), c.body_max_bytes);
    }

    /// The redactor and body limit in force.
    fn current(&self) -> (Arc<Redactor>, usize) {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Handle to the writer thread. Lines are queued without waiting; a full queue drops the line.
pub struct DiscrepancyLog {
    tx: mpsc::Sender<Record>,
    writer: tokio::task::JoinHandle<()>,
    redaction: Redaction,
    telemetry: Arc<dyn Telemetry>,
}

impl std::fmt::Debug for DiscrepancyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscrepancyLog")
            .field("redaction", &self.redaction)
            .finish_non_exhaustive()
    }
}

impl DiscrepancyLog {
    /// The log `c` configures, opened (errors now, not later) with its writer started, or
    /// `None` when no path is set. Needs a tokio runtime (the writer is a blocking task).
    pub fn from_config(
        c: &DiscrepancyLogConfig,
        telemetry: Arc<dyn Telemetry>,
    ) -> Result<Option<Self>, OpenError> {
        match &c.path {
            None => Ok(None),
            Some(path) => Self::open(c, path, telemetry)
                .map(Some)
                .map_err(|source| OpenError {
                    path: path.clone(),
                    source,
                }),
        }
    }

    /// Opens the file (errors now, not later) and starts the writer.
    pub fn open(
        c: &DiscrepancyLogConfig,
        path: &Path,
        telemetry: Arc<dyn Telemetry>,
    ) -> std::io::Result<Self> {
        let mut file = RotatingFile::open(path, c.max_bytes, c.max_files)?;
        let (tx, mut rx) = mpsc::channel::<Record>(WRITER_QUEUE);
        let t = telemetry.clone();
        let writer = tokio::task::spawn_blocking(move || {
            // Started before the tap is attached: the writer needs no capability.
            crate::privileges::drop_in_helper_thread("discrepancy-log");
            while let Some(record) = rx.blocking_recv() {
                let line = match serde_json::to_vec(&record) {
                    Ok(l) => l,
                    Err(e) => {
                        t.discrepancy_log_dropped(&format!("serialize: {e}"));
                        continue;
                    }
                };
                if let Err(e) = file.write_line(&line) {
                    t.discrepancy_log_dropped(&format!("write: {e}"));
                }
            }
        });
        Ok(DiscrepancyLog {
            tx,
            writer,
            redaction: Redaction::new(c),
            telemetry,
        })
    }

    /// A handle that queues lines (cloneable, for the replay workers; a [`DiscrepancySink`]).
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            tx: self.tx.clone(),
            redaction: self.redaction.clone(),
            telemetry: self.telemetry.clone(),
        }
    }

    /// The redaction settings, for a reload to replace.
    pub fn redaction(&self) -> Redaction {
        self.redaction.clone()
    }

    /// Writes out the queued lines and stops the writer once every [`LogWriter`] is dropped.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.writer.await;
    }
}

/// Queues lines for the writer thread without waiting.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Record>,
    redaction: Redaction,
    telemetry: Arc<dyn Telemetry>,
}

impl LogWriter {
    /// Queues a line; a full queue drops it (counted).
    pub fn write(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.telemetry.discrepancy_log_dropped("writer queue full");
        }
    }
}

impl DiscrepancySink for LogWriter {
    /// Queues the redacted line of `comparison`, timed now.
    fn discrepancy(&self, job: &Job, comparison: &Comparison, noise: Option<&NoiseVerdict>) {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let (redactor, body_max_bytes) = self.redaction.current();
        self.write(Record::new(
            job,
            comparison,
            noise,
            &redactor,
            body_max_bytes,
            now_ns,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompareConfig;
    use bytes::Bytes;
    use serde_json::json;
    use shadow_core::compare::ShadowAnswer;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339(1_795_000_000_000_000_000),
            "2026-11-18T11:06:40.000Z"
        );
    }

    #[test]
    fn headers_and_fields_are_redacted() {
        let r = Redactor::new(&DiscrepancyLogConfig {
            redact_headers: vec![hyper::header::HeaderName::from_static("x-api-key")],
            redact_fields: vec![
                PathPattern::parse("/inputs/*/data"),
                PathPattern::parse("/user"),
            ],
            ..Default::default()
        });
        let h = |n: &str, v: &str| Header {
            name: n.into(),
            value: Bytes::from(v.to_string()),
        };
        let out = r.headers(&[
            h("Authorization", "Bearer s3cret"),
            h("cookie", "sid=1"),
            h("Set-Cookie", "a=b"),
            h("x-api-key", "k"),
            h("Content-Type", "application/json"),
        ]);
        let values: Vec<&str> = out.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            vec![REDACTED, REDACTED, REDACTED, REDACTED, "application/json"]
        );
        let mut body = json!({"user": {"id": 7}, "inputs": [{"name": "x", "data": [1, 2]}]});
        r.json(&mut body);
        assert_eq!(
            body,
            json!({"user": REDACTED, "inputs": [{"name": "x", "data": REDACTED}]})
        );
        let mut diffs = vec![FieldDiff {
            path: "/user/id".into(),
            kind: shadow_core::compare::DiffKind::Number,
            production: Some(json!(7)),
            shadow: Some(json!(8)),
        }];
        r.diffs(&mut diffs);
        assert_eq!(diffs[0].production, Some(json!(REDACTED)));
        assert_eq!(diffs[0].shadow, Some(json!(REDACTED)));
    }

    #[test]
    fn record_carries_sha_body_and_redacted_headers() {
        let mut ex = crate::admission::tests::job("POST", "/v2/models/m/infer", "{\"a\":1}");
        ex.request.headers.push(Header {
            name: "Authorization".into(),
            value: Bytes::from_static(b"Bearer x"),
        });
        let cmp = CompareConfig::default().comparer().compare(
            &ex.prod_response,
            Some(1_000_000),
            &ShadowAnswer::Response {
                trailers: Vec::new(),
                status: 500,
                headers: Vec::new(),
                body: Bytes::from_static(b"oops"),
                latency_ns: 2_000_000,
            },
        );
        let r = Record::new(
            &ex,
            &cmp,
            None,
            &Redactor::new(&Default::default()),
            4096,
            0,
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["request"]["body_sha256"],
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
        assert_eq!(v["request"]["body"], json!({"a": 1}));
        assert_eq!(
            v["request"]["headers"][1],
            json!(["Authorization", REDACTED])
        );
        assert_eq!(v["production"]["status"], 200);
        assert_eq!(v["shadow"]["status"], 500);
        assert_eq!(v["shadow"]["latency_ms"], 2.0);
        assert_eq!(v["discrepancies"], json!(["status", "body"]));
        assert!(
            v.get("noise").is_none() && v.get("noisy_paths").is_none(),
            "no baseline"
        );
        let verdict = NoiseVerdict {
            noise: true,
            noisy_paths: vec!["/request_id".into()],
            real_paths: Vec::new(),
        };
        let r = Record::new(
            &ex,
            &cmp,
            Some(&verdict),
            &Redactor::new(&Default::default()),
            0,
            0,
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["noise"], true);
        assert_eq!(v["noisy_paths"], json!(["/request_id"]));
        // Truncation of a non-JSON body.
        let mut ex2 = ex.clone();
        ex2.request.body = Bytes::from_static(b"0123456789");
        let r = Record::new(&ex2, &cmp, None, &Redactor::new(&Default::default()), 4, 0);
        assert_eq!(r.request.body, Some(json!("0123")));
        assert!(r.request.body_truncated);
        assert_eq!(r.request.body_len, 10);
        // The protocol the exchange came in.
        assert_eq!(v["protocol"], "http1");
        let mut call = ex.clone();
        call.protocol = Protocol::Grpc;
        let r = Record::new(&call, &cmp, None, &Redactor::new(&Default::default()), 0, 0);
        assert_eq!(serde_json::to_value(&r).unwrap()["protocol"], "grpc");
        call.protocol = Protocol::H2;
        let r = Record::new(&call, &cmp, None, &Redactor::new(&Default::default()), 0, 0);
        assert_eq!(serde_json::to_value(&r).unwrap()["protocol"], "h2");
    }

    #[test]
    fn file_is_0600_and_rotates_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let line = [b'x'; 39]; // 40 bytes with the newline
        for _ in 0..7 {
            f.write_line(&line).unwrap();
        }
        // 7 lines of 40 B, 2 per file: current has 1, .1 and .2 have 2 each, the oldest dropped.
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size(&path), 40);
        assert_eq!(size(&dir.path().join("d.jsonl.1")), 80);
        assert_eq!(size(&dir.path().join("d.jsonl.2")), 80);
        assert!(!dir.path().join("d.jsonl.3").exists());
        let mode = std::fs::metadata(dir.path().join("d.jsonl.1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
