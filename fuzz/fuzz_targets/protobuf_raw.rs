//! Arbitrary bytes as a protobuf message: read without a schema (JSON keyed by field numbers)
//! and decoded by the two presets' message types into their REST shapes, then put through the
//! REST presets' prediction extraction. Checks that nothing panics, that the raw reading is
//! JSON that serialises, and that it fails exactly when the top-level field parse does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shadow_core::compare::Preset;
use shadow_core::grpc::{GrpcPreset, wire};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let json = wire::to_json(message);
            assert_eq!(json.is_ok(), wire::parse_fields(message).is_ok());
            if let Ok(v) = json {
                assert!(v.is_object());
                let _ = serde_json::to_string(&v).unwrap_or_default();
            }
            assert!(!wire::to_json_or_base64(message).is_null());
        }
        1 => {
            if let Ok(v) = GrpcPreset::KserveV2.response_json(None, message) {
                let _ = Preset::KserveV2 { label_output: None }.extract(&v);
            }
            let _ = GrpcPreset::KserveV2.request_json(message);
        }
        2 => {
            let stream = Some("/inference.GRPCInferenceService/ModelStreamInfer");
            if let Ok(v) = GrpcPreset::KserveV2.response_json(stream, message) {
                let _ = Preset::KserveV2 { label_output: None }.extract(&v);
            }
        }
        _ => {
            if let Ok(v) = GrpcPreset::TfServing.response_json(None, message) {
                let _ = Preset::Predictions.extract(&v);
            }
            let _ = GrpcPreset::TfServing.request_json(message);
        }
    }
});
