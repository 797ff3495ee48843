//! Notices a shadow that does not serve the replayed paths: when most answers of a window of
//! replays are `404 Not Found` or `405 Method Not Allowed`, the usual cause is a shadow serving
//! the model under another name (KServe, Triton, MLServer) or another API. Said once, at warn
//! level, with an example request and what to do.

use hyper::Uri;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Answers looked at together.
const WINDOW: u32 = 10;
/// Of a window, this many 404/405 answers mean "most replays are not routed".
const MOST: u32 = 6;

/// Counts answers per window and warns once.
#[derive(Debug, Default)]
pub(super) struct RouteWatch {
    window: Mutex<(u32, u32)>,
    warned: AtomicBool,
}

impl RouteWatch {
    /// One answer with `status` to `method target`, replayed to `uri`. Returns whether this
    /// answer made the watch warn (once per watch).
    pub(super) fn record(&self, status: u16, method: &str, target: &str, uri: &Uri) -> bool {
        if self.warned.load(Ordering::Relaxed) {
            return false;
        }
        let unrouted = matches!(status, 404 | 405);
        let full = {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            w.0 += 1;
            w.1 += u32::from(unrouted);
            let counts = *w;
            if w.0 >= WINDOW {
                *w = (0, 0);
            }
            counts
        };
        let (answers, not_found) = full;
        if answers < WINDOW || not_found < MOST || !unrouted {
            return false;
        }
        if self.warned.swap(true, Ordering::Relaxed) {
            return false;
        }
        let path = target.split('?').next().unwrap_or(target);
        tracing::warn!(
            status,
            method,
            path,
            shadow_uri = %uri,
            "the shadow answered {not_found} of the last {answers} replays with 404/405, e.g. \
             {method} {path} -> {uri}: it does not serve these paths. If it serves the model \
             under another name, give it with --shadow-model NAME (or shadow.model), or map \
             paths with [[shadow.rewrite]] rules; `shadowd check-config --shadow-model NAME \
             --sample-path {path}` shows where a path is replayed. Answers are counted in \
             shadowtap_shadow_http_errors_total{{status}}"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri() -> Uri {
        Uri::from_static("http://127.0.0.1:9/v2/models/wine/infer")
    }

    #[test]
    fn warns_once_when_most_of_a_window_is_not_found() {
        let w = RouteWatch::default();
        let target = "/v2/models/wine/infer?x=1";
        let warned: Vec<bool> = (0..30)
            .map(|i| w.record(if i % 2 == 0 { 404 } else { 405 }, "POST", target, &uri()))
            .collect();
        assert_eq!(warned.iter().filter(|w| **w).count(), 1);
        assert!(warned[9], "at the end of the first window");
    }

    #[test]
    fn a_few_not_found_answers_are_not_a_routing_problem() {
        let w = RouteWatch::default();
        for i in 0..100 {
            // 5 of every 10: not most.
            let status = if i % 2 == 0 { 404 } else { 200 };
            assert!(!w.record(status, "POST", "/a", &uri()), "answer {i}");
        }
        // 500s are the shadow failing, not a missing route.
        for _ in 0..20 {
            assert!(!w.record(500, "POST", "/a", &uri()));
        }
    }
}
