use super::super::*;
use crate::grpc::{GrpcCode, GrpcPreset, ProtoFile, ProtoSchema, StatusSource, encode_message};
use crate::http::HttpRequest;
use prost_reflect::DynamicMessage;
use serde_json::json;
use std::io::Write;

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: Bytes::from(value.to_string()),
    }
}

fn framed(messages: &[Vec<u8>]) -> Bytes {
    Bytes::from(
        messages
            .iter()
            .flat_map(|m| encode_message(m, false).unwrap())
            .collect::<Vec<u8>>(),
    )
}

fn grpc_headers() -> Vec<Header> {
    vec![h("content-type", "application/grpc")]
}

fn ok_trailers() -> Vec<Header> {
    vec![h("grpc-status", "0")]
}

/// Production's answer: the messages, then `grpc-status: 0`.
fn production(messages: &[Vec<u8>]) -> HttpResponse {
    HttpResponse {
        status: 200,
        version: 2,
        headers: grpc_headers(),
        body: framed(messages),
        trailers: ok_trailers(),
    }
}

fn shadow(messages: &[Vec<u8>]) -> ShadowAnswer {
    ShadowAnswer::Response {
        status: 200,
        headers: grpc_headers(),
        body: framed(messages),
        trailers: ok_trailers(),
        latency_ns: 1_000,
    }
}

/// A `ModelInferResponse` with one FP32 output `[1, 3]`.
fn infer(id: &str, model: &str, probs: [f32; 3]) -> Vec<u8> {
    let desc = GrpcPreset::KserveV2
        .schema()
        .message("inference.ModelInferResponse")
        .unwrap();
    let m = DynamicMessage::deserialize(
        desc,
        json!({"id": id, "model_name": model, "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 3],
             "contents": {"fp32_contents": probs}}]}),
    )
    .unwrap();
    prost::Message::encode_to_vec(&m)
}

fn comparer(name: PresetName) -> Comparer {
    let body = DiffOptions {
        ignore: name
            .default_ignores()
            .iter()
            .map(|p| PathPattern::parse(p))
            .collect(),
        abs_tolerance: 0.01,
        ..DiffOptions::default()
    };
    Comparer::new(Preset::named(name, None, None), body)
        .with_grpc_decoder(GrpcDecoder::new(name.grpc_preset(), None))
}

#[test]
fn kserve_v2_grpc_answers_agree_within_tolerance_and_name_the_differing_value() {
    let c = comparer(PresetName::KserveV2Grpc);
    let prod = production(&[infer("a", "iris", [0.1, 0.2, 0.7])]);
    // Another id and model name (ignored by default), scores within tolerance.
    let same = c.compare(
        &prod,
        Some(10),
        &shadow(&[infer("b", "iris-v2", [0.105, 0.2, 0.695])]),
    );
    assert_eq!(same.body_equal, Some(true), "{:?}", same.diffs);
    assert_eq!(same.agreement, Some(true));
    assert!(same.discrepancies.is_empty());
    assert_eq!(same.production.prediction.as_ref().unwrap().labels, ["2"]);
    assert_eq!(
        same.production.grpc_status.as_ref().unwrap().kind(),
        GrpcCode::Ok
    );
    assert_eq!((same.production.error, same.shadow.error), (None, None));
    // One output value differs: the diff names it, the label holds.
    let drift = c.compare(
        &prod,
        None,
        &shadow(&[infer("a", "iris", [0.1, 0.25, 0.65])]),
    );
    let paths: Vec<&str> = drift.diffs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/outputs/0/data/1", "/outputs/0/data/2"]);
    assert_eq!(drift.discrepancies, [DiscrepancyKind::Prediction]);
    assert_eq!(drift.agreement, Some(true));
    // The label flips.
    let flip = c.compare(&prod, None, &shadow(&[infer("a", "iris", [0.8, 0.1, 0.1])]));
    assert_eq!(flip.discrepancies, [DiscrepancyKind::Label]);
    assert_eq!(flip.shadow.prediction.as_ref().unwrap().labels, ["0"]);
    assert_eq!(flip.agreement, Some(false));
}

#[test]
fn a_different_grpc_status_is_a_status_discrepancy_and_the_shadows_error() {
    let c = comparer(PresetName::KserveV2Grpc);
    let prod = production(&[infer("a", "m", [0.1, 0.2, 0.7])]);
    // Trailers-only: the status is in the one HEADERS.
    let unavailable = ShadowAnswer::Response {
        status: 200,
        headers: vec![
            h("content-type", "application/grpc"),
            h("grpc-status", "14"),
            h("grpc-message", "model%20overloaded"),
        ],
        body: Bytes::new(),
        trailers: Vec::new(),
        latency_ns: 5,
    };
    assert_eq!(unavailable.error_class(), Some(ErrorClass::GrpcServerError));
    let cmp = c.compare(&prod, None, &unavailable);
    assert_eq!(
        cmp.discrepancies,
        [
            DiscrepancyKind::Status,
            DiscrepancyKind::Body,
            DiscrepancyKind::MissingPrediction
        ]
    );
    assert_eq!(cmp.shadow.error, Some(ErrorClass::GrpcServerError));
    let status = cmp.shadow.grpc_status.as_ref().unwrap();
    assert_eq!(
        (status.kind(), status.source),
        (GrpcCode::Unavailable, StatusSource::Headers)
    );
    assert_eq!(status.message, "model overloaded");
    assert_eq!(cmp.agreement, Some(false));
    // The missing message is a difference at the root.
    assert_eq!(cmp.diffs.len(), 1);
    assert_eq!(
        (cmp.diffs[0].path.as_str(), cmp.diffs[0].kind),
        ("", DiffKind::MissingInShadow)
    );
    let line = serde_json::to_value(&cmp).unwrap();
    assert_eq!(line["shadow"]["grpc_status"]["name"], "UNAVAILABLE");
    assert_eq!(line["shadow"]["error"], "grpc_server");
    assert_eq!(line["production"]["grpc_status"]["code"], 0);
    // A request's fault is classed as a client error, not held against the shadow.
    let invalid = ShadowAnswer::Response {
        status: 200,
        headers: grpc_headers(),
        body: Bytes::new(),
        trailers: vec![h("grpc-status", "3")],
        latency_ns: 5,
    };
    let cmp = c.compare(&prod, None, &invalid);
    assert_eq!(cmp.shadow.error, Some(ErrorClass::GrpcClientError));
    assert!(!ErrorClass::GrpcClientError.is_shadow_failure());
    assert!(cmp.discrepancies.contains(&DiscrepancyKind::Status));
    // Same non-OK status on both sides: no status discrepancy, both errors counted.
    let prod_invalid = HttpResponse {
        body: Bytes::new(),
        trailers: vec![h("grpc-status", "3")],
        ..production(&[])
    };
    let cmp = c.compare(&prod_invalid, None, &invalid);
    assert!(cmp.discrepancies.is_empty(), "{cmp:?}");
    assert_eq!(cmp.production.error, Some(ErrorClass::GrpcClientError));
    assert_eq!(cmp.body_equal, Some(true));
    assert_eq!(cmp.agreement, None);
}

#[test]
fn a_shadow_that_is_not_grpc_is_judged_by_its_http_status() {
    let c = comparer(PresetName::KserveV2Grpc);
    let prod = production(&[infer("a", "m", [0.1, 0.2, 0.7])]);
    let html = ShadowAnswer::Response {
        status: 503,
        headers: vec![h("content-type", "text/html")],
        body: Bytes::from_static(b"<html>busy</html>"),
        trailers: Vec::new(),
        latency_ns: 5,
    };
    let cmp = c.compare(&prod, None, &html);
    assert_eq!(cmp.shadow.error, Some(ErrorClass::ServerError));
    let status = cmp.shadow.grpc_status.as_ref().unwrap();
    assert_eq!(
        (status.kind(), status.source),
        (GrpcCode::Unavailable, StatusSource::Http)
    );
    assert_eq!(cmp.shadow.decode_error, None, "its body is not read");
    assert!(cmp.discrepancies.contains(&DiscrepancyKind::Status));
}

#[test]
fn streaming_answers_pair_messages_in_order() {
    let c = comparer(PresetName::KserveV2Grpc);
    let prod = production(&[
        infer("a", "m", [0.1, 0.2, 0.7]),
        infer("a", "m", [0.6, 0.3, 0.1]),
        infer("a", "m", [0.2, 0.5, 0.3]),
    ]);
    let same = c.compare(
        &prod,
        None,
        &shadow(&[
            infer("b", "m2", [0.1, 0.2, 0.7]),
            infer("b", "m2", [0.6, 0.3, 0.1]),
            infer("b", "m2", [0.2, 0.5, 0.3]),
        ]),
    );
    assert_eq!(same.body_equal, Some(true), "{:?}", same.diffs);
    assert!(same.discrepancies.is_empty());
    let p = same.production.prediction.as_ref().unwrap();
    assert_eq!(p.labels, ["2", "0", "1"]);
    assert_eq!(p.values.as_array().unwrap().len(), 3);
    // Message 1 differs, message 2 is missing.
    let cmp = c.compare(
        &prod,
        None,
        &shadow(&[
            infer("a", "m", [0.1, 0.2, 0.7]),
            infer("a", "m", [0.3, 0.6, 0.1]),
        ]),
    );
    let paths: Vec<(&str, DiffKind)> = cmp
        .diffs
        .iter()
        .map(|d| (d.path.as_str(), d.kind))
        .collect();
    assert_eq!(
        paths,
        [
            ("/1/outputs/0/data/0", DiffKind::Number),
            ("/1/outputs/0/data/1", DiffKind::Number),
            ("/2", DiffKind::MissingInShadow),
        ]
    );
    assert_eq!(cmp.discrepancies, [DiscrepancyKind::Label]);
    assert_eq!(cmp.shadow.prediction.as_ref().unwrap().labels, ["2", "1"]);
    // max_diffs caps the streaming diff as a whole.
    let capped = Comparer::new(
        Preset::None,
        DiffOptions {
            max_diffs: 2,
            ..DiffOptions::default()
        },
    )
    .with_grpc_decoder(GrpcDecoder::new(Some(GrpcPreset::KserveV2), None));
    let cmp = capped.compare(&prod, None, &shadow(&[]));
    assert_eq!(cmp.diffs.len(), 2);
    assert_eq!(cmp.discrepancies, [DiscrepancyKind::Body]);
}

/// A varint field, written by hand.
fn varint_field(number: u8, value: u8) -> Vec<u8> {
    vec![number << 3, value]
}

#[test]
fn without_a_schema_the_raw_wire_format_says_where_answers_differ() {
    let c = Comparer::new(
        Preset::None,
        DiffOptions {
            abs_tolerance: 0.01,
            ..DiffOptions::default()
        },
    );
    // { 1: 7, 2: { 1: 0.5f }, 3: "ok" }
    let message = |n: u8, f: f32| {
        let mut inner = vec![(1 << 3) | 5];
        inner.extend(f.to_le_bytes());
        let mut m = varint_field(1, n);
        m.extend([(2 << 3) | 2, inner.len() as u8]);
        m.extend(inner);
        m.extend([(3 << 3) | 2, 2, b'o', b'k']);
        m
    };
    let prod = production(&[message(7, 0.5)]);
    let close = c.compare(&prod, None, &shadow(&[message(7, 0.505)]));
    assert_eq!(close.body_equal, Some(true), "{:?}", close.diffs);
    let cmp = c.compare(&prod, None, &shadow(&[message(8, 0.75)]));
    let paths: Vec<&str> = cmp.diffs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/1", "/2/1"]);
    assert_eq!(cmp.diffs[1].production, Some(json!(0.5)));
    assert_eq!(cmp.discrepancies, [DiscrepancyKind::Body]);
    // Bytes that are no protobuf at all still compare, exactly.
    let garbage = c.compare(&prod, None, &shadow(&[vec![0xff, 0xff]]));
    assert_eq!(garbage.body_equal, Some(false));
    assert_eq!(garbage.diffs[0].kind, DiffKind::Type);
}

#[test]
fn a_user_schema_decodes_the_requested_method() {
    let schema = ProtoSchema::compile(
        &[ProtoFile {
            name: "score.proto".into(),
            source: r#"syntax = "proto3"; package acme;
                service Scorer { rpc Score(Req) returns (Resp); }
                message Req { string id = 1; }
                message Resp { string label = 1; double score = 2; }"#
                .into(),
        }],
        |_| Ok(None),
    )
    .unwrap();
    let resp = |label: &str, score: f64| {
        let mut m = vec![0x0a, label.len() as u8];
        m.extend(label.as_bytes());
        m.push(0x11);
        m.extend(score.to_le_bytes());
        m
    };
    let c = Comparer::new(Preset::Pointer("/label".into()), DiffOptions::default())
        .with_grpc_decoder(GrpcDecoder::new(None, Some(schema)));
    let request = HttpRequest {
        method: "POST".into(),
        target: "/acme.Scorer/Score".into(),
        ..HttpRequest::default()
    };
    let prod = production(&[resp("fraud", 0.9)]);
    let cmp = c.compare_request(&request, &prod, None, &shadow(&[resp("ok", 0.9)]));
    assert_eq!(cmp.diffs[0].path, "/label");
    assert_eq!(cmp.diffs[0].shadow, Some(json!("ok")));
    assert_eq!(cmp.discrepancies, [DiscrepancyKind::Label]);
    assert_eq!(
        cmp.production.prediction.as_ref().unwrap().labels,
        ["fraud"]
    );
    // Another method of the same service is not in the schema: raw field numbers.
    let other = HttpRequest {
        target: "/acme.Scorer/Other".into(),
        ..request.clone()
    };
    let cmp = c.compare_request(&other, &prod, None, &shadow(&[resp("ok", 0.9)]));
    assert_eq!(cmp.diffs[0].path, "/1");
    assert_eq!(cmp.discrepancies, [DiscrepancyKind::Body]);
    // A message that is not the method's type is a decode failure: not compared.
    let cmp = c.compare_request(&request, &prod, None, &shadow(&[vec![0x0a, 0x09]]));
    assert_eq!(cmp.shadow.decode_error, Some(DecodeFailure::Corrupt));
    assert_eq!((cmp.body_equal, cmp.agreement), (None, None));
    assert!(cmp.discrepancies.is_empty());
}

#[test]
fn messages_are_compared_decompressed() {
    let c = comparer(PresetName::KserveV2Grpc);
    let message = infer("a", "m", [0.1, 0.2, 0.7]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&message).unwrap();
    let coded = gz.finish().unwrap();
    let prod = HttpResponse {
        headers: vec![
            h("content-type", "application/grpc+proto"),
            h("grpc-encoding", "gzip"),
        ],
        body: Bytes::from(encode_message(&coded, true).unwrap()),
        ..production(&[])
    };
    let cmp = c.compare(&prod, None, &shadow(std::slice::from_ref(&message)));
    assert_eq!(cmp.body_equal, Some(true));
    assert!(cmp.discrepancies.is_empty());
    assert_eq!(cmp.agreement, Some(true));
    // A compression shadowtap does not know: not compared, counted as unsupported.
    let snappy = ShadowAnswer::Response {
        status: 200,
        headers: vec![
            h("content-type", "application/grpc"),
            h("grpc-encoding", "snappy"),
        ],
        body: Bytes::from(encode_message(&coded, true).unwrap()),
        trailers: ok_trailers(),
        latency_ns: 1,
    };
    let cmp = c.compare(&prod, None, &snappy);
    assert_eq!(cmp.shadow.decode_error, Some(DecodeFailure::Unsupported));
    assert_eq!((cmp.body_equal, cmp.agreement), (None, None));
    assert!(cmp.discrepancies.is_empty());
}

#[test]
fn tfserving_grpc_answers_feed_the_predictions_preset() {
    let desc = GrpcPreset::TfServing
        .schema()
        .message("tensorflow.serving.PredictResponse")
        .unwrap();
    let predict = |version: &str, scores: [f32; 4]| {
        let m = DynamicMessage::deserialize(
            desc.clone(),
            json!({"model_spec": {"name": "m", "version": version},
                   "outputs": {"scores": {"dtype": "DT_FLOAT",
                       "tensor_shape": {"dim": [{"size": 2}, {"size": 2}]},
                       "float_val": scores}}}),
        )
        .unwrap();
        prost::Message::encode_to_vec(&m)
    };
    let c = comparer(PresetName::TfservingGrpc);
    let prod = production(&[predict("1", [0.9, 0.1, 0.2, 0.8])]);
    let same = c.compare(&prod, None, &shadow(&[predict("2", [0.9, 0.1, 0.2, 0.8])]));
    assert!(same.discrepancies.is_empty(), "{:?}", same.diffs);
    assert_eq!(
        same.production.prediction.as_ref().unwrap().labels,
        ["0", "1"]
    );
    let flip = c.compare(&prod, None, &shadow(&[predict("1", [0.9, 0.1, 0.7, 0.3])]));
    assert_eq!(flip.discrepancies, [DiscrepancyKind::Label]);
    assert_eq!(flip.diffs[0].path, "/predictions/1/0");
}

#[test]
fn http_answers_are_unchanged_by_the_grpc_decoder() {
    let c = comparer(PresetName::KserveV2Grpc);
    let rest = |p: [f64; 3]| {
        json!({"outputs": [{"name": "p", "shape": [1, 3], "datatype": "FP64", "data": p}]})
            .to_string()
    };
    let prod = HttpResponse {
        status: 200,
        version: 1,
        headers: vec![h("content-type", "application/json")],
        body: Bytes::from(rest([0.1, 0.2, 0.7])),
        trailers: Vec::new(),
    };
    let answer = ShadowAnswer::Response {
        status: 200,
        headers: Vec::new(),
        body: Bytes::from(rest([0.7, 0.2, 0.1])),
        trailers: Vec::new(),
        latency_ns: 1,
    };
    let cmp = c.compare(&prod, None, &answer);
    assert_eq!(cmp.discrepancies, [DiscrepancyKind::Label]);
    assert_eq!(cmp.production.grpc_status, None);
    assert_eq!(answer.error_class(), None);
}
