use super::*;
use crate::compare::{Preset, PresetName};
use base64::Engine;
use serde_json::json;

/// A message of the preset's `type_name` built from proto3 JSON, encoded.
fn encode(preset: GrpcPreset, type_name: &str, message: Value) -> Vec<u8> {
    let desc = preset.schema().message(type_name).unwrap();
    let m = DynamicMessage::deserialize(desc, message).unwrap();
    prost::Message::encode_to_vec(&m)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn le<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to(*v)).collect()
}

#[test]
fn the_embedded_protos_compile_and_serve_their_methods() {
    let kserve = GrpcPreset::KserveV2.schema();
    assert!(
        kserve
            .method("/inference.GRPCInferenceService/ModelInfer")
            .is_some()
    );
    assert!(
        kserve
            .method("/inference.GRPCInferenceService/ModelStreamInfer")
            .unwrap()
            .server_streaming
    );
    let tf = GrpcPreset::TfServing.schema();
    let predict = tf
        .method("/tensorflow.serving.PredictionService/Predict")
        .unwrap();
    assert_eq!(
        predict.output.full_name(),
        "tensorflow.serving.PredictResponse"
    );
    assert!(GrpcPreset::TfServing.handles("/tensorflow.serving.PredictionService/Predict"));
    assert!(!GrpcPreset::TfServing.handles("/tensorflow.serving.PredictionService/Classify"));
    assert!(GrpcPreset::KserveV2.handles("/inference.GRPCInferenceService/ModelInfer"));
    assert!(!GrpcPreset::KserveV2.handles("/inference.GRPCInferenceService/ModelMetadata"));
}

#[test]
fn model_infer_contents_become_the_rest_response() {
    let bytes = encode(
        GrpcPreset::KserveV2,
        "inference.ModelInferResponse",
        json!({
            "model_name": "iris", "model_version": "2", "id": "req-1",
            "parameters": {"sequence_end": {"bool_param": true}},
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [2, 3],
                 "contents": {"fp32_contents": [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]}},
                {"name": "label", "datatype": "INT64", "shape": [2],
                 "parameters": {"content_type": {"string_param": "np"}},
                 "contents": {"int64_contents": [2, 0]}}
            ]
        }),
    );
    let rest = GrpcPreset::KserveV2.response_json(None, &bytes).unwrap();
    assert_eq!(
        rest,
        json!({
            "model_name": "iris", "model_version": "2", "id": "req-1",
            "parameters": {"sequence_end": true},
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [2, 3],
                 "data": [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]},
                {"name": "label", "datatype": "INT64", "shape": [2],
                 "parameters": {"content_type": "np"}, "data": [2, 0]}
            ]
        })
    );
    // The REST preset reads it as it reads an MLServer body: the integer output is the label.
    let p = Preset::named(PresetName::KserveV2Grpc, None, None)
        .extract(&rest)
        .unwrap();
    assert_eq!(p.labels, ["2", "0"]);
    assert_eq!(p.scores, [0.7, 0.6]);
}

#[test]
fn raw_output_contents_are_decoded_by_datatype_and_shape() {
    let probs = le(&[0.25f32, 0.75, 0.9, 0.1], f32::to_le_bytes);
    let names = [
        3u32.to_le_bytes().to_vec(),
        b"cat".to_vec(),
        3u32.to_le_bytes().to_vec(),
        b"dog".to_vec(),
    ]
    .concat();
    let bytes = encode(
        GrpcPreset::KserveV2,
        "inference.ModelInferResponse",
        json!({
            "model_name": "m",
            "outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [2, 2]},
                {"name": "class", "datatype": "BYTES", "shape": [2, 1]}
            ],
            "raw_output_contents": [b64(&probs), b64(&names)]
        }),
    );
    let rest = GrpcPreset::KserveV2.response_json(None, &bytes).unwrap();
    assert_eq!(rest["outputs"][0]["data"], json!([0.25, 0.75, 0.9, 0.1]));
    assert_eq!(rest["outputs"][1]["data"], json!(["cat", "dog"]));
    assert_eq!(rest["outputs"][1]["shape"], json!([2, 1]));
    let p = Preset::KserveV2 { label_output: None }
        .extract(&rest)
        .unwrap();
    assert_eq!(p.labels, ["cat", "dog"]);
    // Fewer raw entries than outputs: the message is not what it says.
    let short = encode(
        GrpcPreset::KserveV2,
        "inference.ModelInferResponse",
        json!({"outputs": [{"name": "a", "datatype": "FP32"}, {"name": "b", "datatype": "FP32"}],
               "raw_output_contents": [b64(&probs)]}),
    );
    let e = GrpcPreset::KserveV2
        .response_json(None, &short)
        .unwrap_err();
    assert!(matches!(e, MessageDecodeError::Tensor(_)), "{e}");
}

#[test]
fn raw_tensor_data_for_each_datatype() {
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        ("BOOL", vec![1, 0, 2], json!([true, false, true])),
        ("UINT8", vec![0, 255], json!([0, 255])),
        ("INT8", vec![0x80, 0x7f], json!([-128, 127])),
        (
            "UINT16",
            le(&[65535u16, 1], u16::to_le_bytes),
            json!([65535, 1]),
        ),
        (
            "INT16",
            le(&[-2i16, 300], i16::to_le_bytes),
            json!([-2, 300]),
        ),
        (
            "UINT32",
            le(&[u32::MAX], u32::to_le_bytes),
            json!([u32::MAX]),
        ),
        (
            "INT32",
            le(&[-7i32, 1 << 30], i32::to_le_bytes),
            json!([-7, 1 << 30]),
        ),
        (
            "UINT64",
            le(&[u64::MAX], u64::to_le_bytes),
            json!([u64::MAX]),
        ),
        (
            "INT64",
            le(&[i64::MIN, 5], i64::to_le_bytes),
            json!([i64::MIN, 5]),
        ),
        // 1.0, -2.0, 0.5 and the smallest subnormal in IEEE half precision.
        (
            "FP16",
            le(&[0x3c00u16, 0xc000, 0x3800, 0x0001], u16::to_le_bytes),
            json!([1.0, -2.0, 0.5, 5.960_464_5e-8]),
        ),
        // bfloat16 is the top half of a float32.
        (
            "BF16",
            le(&[0x3f80u16, 0x4049], u16::to_le_bytes),
            json!([1.0, 3.140_625]),
        ),
        (
            "FP32",
            le(&[0.1f32, -1.5], f32::to_le_bytes),
            json!([0.1, -1.5]),
        ),
        (
            "FP64",
            le(&[0.1f64, 1e300], f64::to_le_bytes),
            json!([0.1, 1e300]),
        ),
        (
            "BYTES",
            [
                2u32.to_le_bytes().to_vec(),
                b"hi".to_vec(),
                0u32.to_le_bytes().to_vec(),
                1u32.to_le_bytes().to_vec(),
                vec![0xff],
            ]
            .concat(),
            json!(["hi", "", "/w=="]),
        ),
        ("FP8", vec![1, 2, 3], json!("AQID")),
    ];
    for (datatype, raw, expected) in cases {
        assert_eq!(
            raw_tensor_data(datatype, &raw).unwrap(),
            expected,
            "{datatype}"
        );
    }
    assert!(raw_tensor_data("FP32", &[0, 0, 0]).is_err());
    assert!(raw_tensor_data("INT64", &[0; 12]).is_err());
    assert!(raw_tensor_data("BYTES", &[5, 0, 0, 0, b'a']).is_err());
    assert!(raw_tensor_data("BYTES", &[5, 0]).is_err());
    assert_eq!(raw_tensor_data("FP32", &[]).unwrap(), json!([]));
    // Non-finite floats are null, as JSON cannot hold them.
    assert_eq!(
        raw_tensor_data("FP32", &f32::NAN.to_le_bytes()).unwrap(),
        json!([null])
    );
}

#[test]
fn half_precision_conversion() {
    assert_eq!(f16_to_f32(0x0000), 0.0);
    assert!(f16_to_f32(0x8000).is_sign_negative());
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
    assert_eq!(f16_to_f32(0x0400), 6.103_515_6e-5);
    assert_eq!(f16_to_f32(0x8001), -5.960_464_5e-8);
}

#[test]
fn triton_stream_messages_carry_the_inner_response() {
    let bytes = encode(
        GrpcPreset::KserveV2,
        "inference.ModelStreamInferResponse",
        json!({"infer_response": {"id": "1", "outputs": [
            {"name": "y", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [4]}}]}}),
    );
    let path = Some("/inference.GRPCInferenceService/ModelStreamInfer");
    let rest = GrpcPreset::KserveV2.response_json(path, &bytes).unwrap();
    assert_eq!(rest["outputs"][0]["data"], json!([4]));
    assert!(rest.get("error_message").is_none());
    let failed = encode(
        GrpcPreset::KserveV2,
        "inference.ModelStreamInferResponse",
        json!({"error_message": "model not ready"}),
    );
    let rest = GrpcPreset::KserveV2.response_json(path, &failed).unwrap();
    assert_eq!(rest, json!({"error_message": "model not ready"}));
}

#[test]
fn model_infer_requests_become_rest_requests() {
    let bytes = encode(
        GrpcPreset::KserveV2,
        "inference.ModelInferRequest",
        json!({"model_name": "iris", "id": "r1",
               "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2]}],
               "outputs": [{"name": "label"}],
               "raw_input_contents": [b64(&le(&[5.1f64, 3.5], f64::to_le_bytes))]}),
    );
    let rest = GrpcPreset::KserveV2.request_json(&bytes).unwrap();
    assert_eq!(rest["id"], "r1");
    assert_eq!(
        rest["inputs"],
        json!([{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [5.1, 3.5]}])
    );
    assert_eq!(rest["outputs"], json!([{"name": "label"}]));
}

fn tensor(dtype: &str, shape: &[i64], values: Value) -> Value {
    let mut t = json!({
        "dtype": dtype,
        "tensor_shape": {"dim": shape.iter().map(|s| json!({"size": s})).collect::<Vec<_>>()},
    });
    if let (Some(t), Some(v)) = (t.as_object_mut(), values.as_object()) {
        t.extend(v.clone());
    }
    t
}

#[test]
fn predict_responses_become_predictions() {
    let bytes = encode(
        GrpcPreset::TfServing,
        "tensorflow.serving.PredictResponse",
        json!({
            "model_spec": {"name": "iris", "version": "3", "signature_name": "serving_default"},
            "outputs": {"scores": tensor("DT_FLOAT", &[2, 3], json!({"float_val": [0.1, 0.2, 0.7, 0.6, 0.3, 0.1]}))}
        }),
    );
    let rest = GrpcPreset::TfServing.response_json(None, &bytes).unwrap();
    assert_eq!(
        rest["predictions"],
        json!([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    );
    assert_eq!(rest["model_spec"]["name"], "iris");
    assert_eq!(rest["model_spec"]["version"], 3);
    let p = Preset::named(PresetName::TfservingGrpc, None, None)
        .extract(&rest)
        .unwrap();
    assert_eq!(p.labels, ["2", "0"]);
    assert_eq!(p.scores, [0.7, 0.6]);
}

#[test]
fn predict_tensor_content_strings_broadcast_and_several_outputs() {
    let content = le(&[1i64, 2, 3, 4], i64::to_le_bytes);
    let bytes = encode(
        GrpcPreset::TfServing,
        "tensorflow.serving.PredictResponse",
        json!({"outputs": {
            "ids": tensor("DT_INT64", &[2, 2], json!({"tensor_content": b64(&content)})),
            "names": tensor("DT_STRING", &[2], json!({"string_val": [b64(b"cat"), b64(&[0xff])]})),
            "bias": tensor("DT_DOUBLE", &[2, 2], json!({"double_val": [0.5]})),
        }}),
    );
    let rest = GrpcPreset::TfServing.response_json(None, &bytes).unwrap();
    // Rows of one batch: one object per row, as TF Serving's REST row format.
    assert_eq!(
        rest["predictions"],
        json!([
            {"bias": [0.5, 0.5], "ids": [1, 2], "names": "cat"},
            {"bias": [0.5, 0.5], "ids": [3, 4], "names": {"b64": "/w=="}}
        ])
    );
    // Different batch sizes: column-wise.
    let bytes = encode(
        GrpcPreset::TfServing,
        "tensorflow.serving.PredictResponse",
        json!({"outputs": {
            "a": tensor("DT_INT32", &[1], json!({"int_val": [7]})),
            "b": tensor("DT_BOOL", &[], json!({"bool_val": [true]})),
            "c": tensor("DT_HALF", &[2], json!({"half_val": [0x3c00, 0x3800]})),
        }}),
    );
    let rest = GrpcPreset::TfServing.response_json(None, &bytes).unwrap();
    assert_eq!(
        rest["outputs"],
        json!({"a": [7], "b": true, "c": [1.0, 0.5]})
    );
    assert!(rest.get("predictions").is_none());
}

#[test]
fn predict_requests_are_columnar() {
    let bytes = encode(
        GrpcPreset::TfServing,
        "tensorflow.serving.PredictRequest",
        json!({"model_spec": {"name": "m"},
               "inputs": {"x": tensor("DT_FLOAT", &[1, 2], json!({"float_val": [1.5, 2.5]}))}}),
    );
    let rest = GrpcPreset::TfServing.request_json(&bytes).unwrap();
    assert_eq!(rest["inputs"], json!({"x": [[1.5, 2.5]]}));
}

#[test]
fn bytes_that_are_not_the_message_are_errors() {
    let e = GrpcPreset::KserveV2
        .response_json(None, &[0x0a, 0x05, b'a'])
        .unwrap_err();
    assert!(
        matches!(&e, MessageDecodeError::Protobuf { message_type, .. } if message_type == "inference.ModelInferResponse"),
        "{e}"
    );
    assert_eq!(e.failure(), crate::encoding::DecodeFailure::Corrupt);
}

#[test]
fn a_single_value_fills_a_shape_only_up_to_its_cap() {
    let fill = |size: i64| {
        encode(
            GrpcPreset::TfServing,
            "tensorflow.serving.PredictResponse",
            json!({"outputs": {"y": tensor("DT_FLOAT", &[size], json!({"float_val": [0.5]}))}}),
        )
    };
    let rest = GrpcPreset::TfServing.response_json(None, &fill(3)).unwrap();
    assert_eq!(rest["predictions"], json!([0.5, 0.5, 0.5]));
    // A few bytes must not stand for millions of elements.
    let e = GrpcPreset::TfServing
        .response_json(None, &fill(MAX_FILL as i64 + 1))
        .unwrap_err();
    assert_eq!(e, MessageDecodeError::TooLarge { limit: MAX_FILL });
    assert_eq!(e.failure(), crate::encoding::DecodeFailure::Truncated);
    // Nor may an empty tensor of a huge outer shape.
    let empty = |dims: &[i64]| {
        encode(
            GrpcPreset::TfServing,
            "tensorflow.serving.PredictResponse",
            json!({"outputs": {"y": tensor("DT_FLOAT", dims, json!({}))}}),
        )
    };
    let rest = GrpcPreset::TfServing
        .response_json(None, &empty(&[2, 3, 0]))
        .unwrap();
    assert_eq!(rest["predictions"], json!([[[], [], []], [[], [], []]]));
    let e = GrpcPreset::TfServing
        .response_json(None, &empty(&[1 << 40, 0]))
        .unwrap_err();
    assert_eq!(e, MessageDecodeError::TooLarge { limit: MAX_FILL });
}
