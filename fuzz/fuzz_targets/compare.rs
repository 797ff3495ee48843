//! Two arbitrary answers → `compare::Comparer`, built as the daemon builds it from
//! `[compare]` (a preset by name with its default ignored paths, tolerances, a gRPC decoder
//! for the preset, decode caps). Input: three option bytes, then production's body, `0xFF`, the
//! shadow's body; without `0xFF` the shadow answers exactly as production did.
//!
//! Option bytes: preset (bits 0-2), gRPC content type on both sides (3), gzip on production's
//! (4) and on the shadow's body (5), the shadow failed (6), the shadow answered 503 (7);
//! absolute and relative tolerance; diff cap (bits 0-3), preset ignores (4), an unordered
//! array (5), an ignored path (6).
//!
//! Checks that an answer identical to production's agrees with it (no discrepancy, equal
//! bodies, agreement whenever production has a prediction), that a status difference is always
//! reported, that equal bodies have no field differences, that the cap holds, that discrepancy
//! kinds are sorted and unique, that a failed shadow gets no verdict, and that the comparison
//! serialises (it is written to the discrepancy log).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::compare::{
    Comparer, DecodeLimits, DiffOptions, ErrorClass, PathPattern, Preset, PresetName, ShadowAnswer,
};
use shadow_core::grpc::GrpcDecoder;
use shadow_core::http::{Header, HttpRequest, HttpResponse};

const TOLERANCES: [f64; 4] = [0.0, 1e-6, 0.01, 1.0];
const CAP: usize = 64 * 1024;

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn headers(grpc: bool, gzip: bool) -> Vec<Header> {
    let mut h = vec![header(
        "content-type",
        if grpc {
            "application/grpc"
        } else {
            "application/json"
        },
    )];
    if gzip {
        h.push(header(
            if grpc {
                "grpc-encoding"
            } else {
                "content-encoding"
            },
            "gzip",
        ));
    }
    h
}

/// The comparer `CompareConfig::comparer` builds for these settings.
fn comparer(name: PresetName, options: &[u8; 3]) -> Comparer {
    let mut diff = DiffOptions {
        abs_tolerance: TOLERANCES[usize::from(options[1] & 3)],
        rel_tolerance: TOLERANCES[usize::from((options[1] >> 2) & 3)],
        max_diffs: usize::from(options[2] & 0x0f),
        ..DiffOptions::default()
    };
    if options[2] & 0x10 != 0 {
        diff.ignore
            .extend(name.default_ignores().iter().map(|p| PathPattern::parse(p)));
    }
    if options[2] & 0x20 != 0 {
        diff.unordered.push(PathPattern::parse("/outputs/*/data"));
        diff.unordered.push(PathPattern::parse("/predictions"));
    }
    if options[2] & 0x40 != 0 {
        diff.ignore.push(PathPattern::parse("/outputs/*/name"));
    }
    let preset = Preset::named(name, None, Some("/predictions".into()));
    Comparer::new(preset, diff)
        .with_decode_limits(DecodeLimits {
            production: CAP,
            shadow: CAP,
        })
        .with_grpc_decoder(GrpcDecoder::new(name.grpc_preset(), None))
}

fn target(name: PresetName) -> &'static str {
    match name {
        PresetName::KserveV2Grpc => "/inference.GRPCInferenceService/ModelInfer",
        PresetName::TfservingGrpc => "/tensorflow.serving.PredictionService/Predict",
        _ => "/v2/models/m/infer",
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((options, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let name = PresetName::ALL[usize::from(options[0] & 7) % PresetName::ALL.len()];
    let grpc = options[0] & 0x08 != 0;
    let (production_body, shadow_body) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let identical = production_body == shadow_body && options[0] & 0xf0 == 0;
    let comparer = comparer(name, options);
    let request = HttpRequest {
        method: "POST".into(),
        target: target(name).into(),
        ..HttpRequest::default()
    };
    let production = HttpResponse {
        status: 200,
        version: 1,
        headers: headers(grpc, options[0] & 0x10 != 0),
        body: Bytes::copy_from_slice(production_body),
        trailers: if grpc {
            vec![header("grpc-status", "0")]
        } else {
            Vec::new()
        },
    };
    let shadow = if options[0] & 0x40 != 0 {
        ShadowAnswer::Failed {
            class: ErrorClass::Timeout,
            message: "timed out".into(),
            latency_ns: 5,
        }
    } else {
        ShadowAnswer::Response {
            status: if options[0] & 0x80 != 0 { 503 } else { 200 },
            headers: headers(grpc, options[0] & 0x20 != 0),
            body: Bytes::copy_from_slice(shadow_body),
            trailers: production.trailers.clone(),
            latency_ns: 7,
        }
    };
    let c = comparer.compare_request(&request, &production, Some(3), &shadow);

    let mut kinds = c.discrepancies.clone();
    kinds.dedup();
    assert_eq!(kinds, c.discrepancies, "sorted, each kind once");
    assert!(kinds.windows(2).all(|w| w[0] < w[1]));
    if c.body_equal == Some(true) {
        assert!(c.diffs.is_empty(), "equal bodies have no field differences");
    }
    let max = usize::from(options[2] & 0x0f);
    if max > 0 {
        assert!(
            c.diffs.len() <= max,
            "{} differences over the cap {max}",
            c.diffs.len()
        );
    }
    if c.agreement.is_some() {
        assert!(
            c.production.prediction.is_some(),
            "agreement needs production's prediction"
        );
    }
    match &shadow {
        ShadowAnswer::Failed { .. } => {
            assert_eq!((c.body_equal, c.agreement), (None, None));
            assert!(c.discrepancies.is_empty());
            assert!(!c.shadow_answered());
        }
        ShadowAnswer::Response { status, .. } => {
            assert!(c.shadow_answered());
            if *status != production.status {
                assert!(
                    c.discrepancies
                        .contains(&shadow_core::compare::DiscrepancyKind::Status)
                );
            }
        }
    }
    if identical {
        assert!(c.discrepancies.is_empty(), "the same answer differs: {c:?}");
        assert!(c.diffs.is_empty());
        assert_eq!(c.production.prediction, c.shadow.prediction);
        if c.body_equal.is_some() {
            assert_eq!(c.body_equal, Some(true));
            assert_eq!(c.agreement, c.production.prediction.as_ref().map(|_| true));
        }
    }
    let _ = serde_json::to_string(&c).expect("a comparison serialises");
});
