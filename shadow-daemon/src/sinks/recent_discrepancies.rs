//! The last discrepancies, kept in memory for `GET /api/discrepancies?limit=N` (`shadowd top`
//! shows them): a bounded ring of short records, newest last, redacted as in the discrepancy
//! log ([`Redactor`]: configured fields in the diff values) and without the request's query
//! string or body (they may carry secrets). Kept whether or not a discrepancy log is written.

use crate::admission::Job;
use crate::config::DiscrepancyLogConfig;
use crate::mirror::DiscrepancySink;
use crate::sinks::discrepancy_log::{Redactor, rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shadow_core::compare::{Comparison, Side};
use shadow_core::noise::NoiseVerdict;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Discrepancies kept (and the most `/api/discrepancies` answers).
pub const KEPT: usize = 100;
/// Field differences kept per discrepancy (the log has them all).
pub const DIFFS_KEPT: usize = 8;
/// Labels kept per answer (rows of a batch).
pub const LABELS_KEPT: usize = 4;

/// One discrepancy, short.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentDiscrepancy {
    /// RFC 3339 UTC time the comparison finished.
    pub time: String,
    /// `http1`, `h2` or `grpc`.
    pub protocol: String,
    /// The request method.
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// Production's answer.
    pub production: RecentSide,
    /// The shadow's answer.
    pub shadow: RecentSide,
    /// How the answers differ (`status`, `label`, `body`, ...).
    pub kinds: Vec<String>,
    /// The first field differences (JSON pointer, kind, both values), redacted.
    pub diff: Vec<Value>,
    /// With a noise baseline: whether production's own noise explains it all.
    pub noise: Option<bool>,
}

/// One model's answer, short.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentSide {
    /// Status code, when an answer came.
    pub status: Option<u16>,
    /// Error class (`5xx`, `timeout`, ...).
    pub error: Option<String>,
    /// The first predicted labels.
    pub labels: Vec<String>,
    /// Latency, milliseconds.
    pub latency_ms: Option<f64>,
}

impl RecentSide {
    fn of(s: &Side) -> Self {
        RecentSide {
            status: s.status,
            error: s.error.map(|e| e.as_str().to_owned()),
            labels: s
                .prediction
                .iter()
                .flat_map(|p| p.labels.iter().take(LABELS_KEPT).cloned())
                .collect(),
            latency_ms: s.latency_ns.map(|ns| ns as f64 / 1e6),
        }
    }
}

/// The ring, shared between the replay workers (a [`DiscrepancySink`]) and the admin server.
#[derive(Clone, Debug)]
pub struct RecentDiscrepancies {
    ring: Arc<Mutex<VecDeque<RecentDiscrepancy>>>,
    redactor: Redactor,
}

impl RecentDiscrepancies {
    /// An empty ring redacting as `log` configures the discrepancy log.
    pub fn new(log: &DiscrepancyLogConfig) -> Self {
        RecentDiscrepancies {
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(KEPT))),
            redactor: Redactor::new(log),
        }
    }

    /// The newest `limit` (at most [`KEPT`]), oldest first.
    pub fn latest(&self, limit: usize) -> Vec<RecentDiscrepancy> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let skip = ring.len().saturating_sub(limit);
        ring.iter().skip(skip).cloned().collect()
    }

    /// The short record of `comparison` of `job`, redacted.
    fn record(
        &self,
        job: &Job,
        comparison: &Comparison,
        noise: Option<&NoiseVerdict>,
        now_ns: u64,
    ) -> RecentDiscrepancy {
        let mut diffs: Vec<_> = comparison.diffs.iter().take(DIFFS_KEPT).cloned().collect();
        self.redactor.diffs(&mut diffs);
        let target = &job.request.target;
        RecentDiscrepancy {
            time: rfc3339(now_ns),
            protocol: job.protocol.as_str().to_owned(),
            method: job.request.method.clone(),
            path: target.split('?').next().unwrap_or_default().to_owned(),
            production: RecentSide::of(&comparison.production),
            shadow: RecentSide::of(&comparison.shadow),
            kinds: comparison
                .discrepancies
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            diff: diffs
                .iter()
                .filter_map(|d| serde_json::to_value(d).ok())
                .collect(),
            noise: noise.map(|v| v.noise),
        }
    }

    fn push(&self, record: RecentDiscrepancy) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= KEPT {
            ring.pop_front();
        }
        ring.push_back(record);
    }
}

impl DiscrepancySink for RecentDiscrepancies {
    fn discrepancy(&self, job: &Job, comparison: &Comparison, noise: Option<&NoiseVerdict>) {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.push(self.record(job, comparison, noise, now_ns));
    }
}

/// Hands each discrepancy to several sinks (the log and the recent ring).
pub struct Fanout(pub Vec<Box<dyn DiscrepancySink>>);

impl DiscrepancySink for Fanout {
    fn discrepancy(&self, job: &Job, comparison: &Comparison, noise: Option<&NoiseVerdict>) {
        for sink in &self.0 {
            sink.discrepancy(job, comparison, noise);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompareConfig;
    use bytes::Bytes;
    use shadow_core::compare::{PathPattern, ShadowAnswer};

    fn differing(job: &Job, body: &'static [u8]) -> Comparison {
        CompareConfig::default().comparer().compare(
            &job.prod_response,
            Some(1_000_000),
            &ShadowAnswer::Response {
                trailers: Vec::new(),
                status: 500,
                headers: Vec::new(),
                body: Bytes::from_static(body),
                latency_ns: 2_000_000,
            },
        )
    }

    #[test]
    fn keeps_the_newest_short_and_redacted_without_the_query() {
        let log = DiscrepancyLogConfig {
            redact_fields: vec![PathPattern::parse("/secret")],
            ..DiscrepancyLogConfig::default()
        };
        let recent = RecentDiscrepancies::new(&log);
        assert!(recent.latest(10).is_empty());
        let mut job = crate::admission::tests::job("POST", "/v1/predict?api_key=k", "{}");
        job.prod_response.body = Bytes::from_static(b"{\"secret\": \"p\", \"y\": 1}");
        let c = differing(&job, b"{\"secret\": \"s\", \"y\": 2}");
        assert!(!c.discrepancies.is_empty() && !c.diffs.is_empty(), "{c:?}");
        recent.discrepancy(&job, &c, None);
        let got = recent.latest(10);
        assert_eq!(got.len(), 1);
        let d = &got[0];
        assert_eq!(
            (d.method.as_str(), d.path.as_str()),
            ("POST", "/v1/predict")
        );
        assert_eq!(d.protocol, "http1");
        assert_eq!(
            (d.production.status, d.shadow.status),
            (Some(200), Some(500))
        );
        assert_eq!(d.shadow.error.as_deref(), Some("5xx"));
        assert_eq!(d.shadow.latency_ms, Some(2.0));
        assert!(d.kinds.contains(&"status".to_string()), "{:?}", d.kinds);
        let text = serde_json::to_string(&d.diff).unwrap();
        assert!(text.contains("/secret") && text.contains(crate::sinks::discrepancy_log::REDACTED));
        assert!(!text.contains("\"s\"") && !text.contains("\"p\""), "{text}");
        assert!(text.contains("/y"), "{text}");
        // Round trip: readers deserialize what the endpoint serves.
        let back: Vec<RecentDiscrepancy> =
            serde_json::from_str(&serde_json::to_string(&got).unwrap()).unwrap();
        assert_eq!(back, got);

        // Bounded, newest kept, asked-for count from the newest end.
        for i in 0..KEPT + 5 {
            let job = crate::admission::tests::job("GET", &format!("/n/{i}"), "");
            recent.discrepancy(&job, &differing(&job, b"x"), None);
        }
        assert_eq!(recent.latest(usize::MAX).len(), KEPT);
        let last: Vec<String> = recent.latest(2).into_iter().map(|d| d.path).collect();
        assert_eq!(
            last,
            vec![format!("/n/{}", KEPT + 3), format!("/n/{}", KEPT + 4)]
        );
    }
}
