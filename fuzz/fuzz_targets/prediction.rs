//! An arbitrary JSON body → prediction extraction with every preset
//! (`compare::Preset::named` for each `PresetName`, as the config builds it). Input: a JSON
//! pointer / label output name, `0xFF`, the body.
//!
//! Checks that extraction is deterministic, that the values are what the preset names
//! (`predictions`, the pointed-at value, an object of output tensors), that there is at most
//! one label and one score per row, that scores are finite, that `argmax` picks a valid index,
//! and that a prediction serialises (it is written to the discrepancy log).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shadow_core::compare::prediction::argmax;
use shadow_core::compare::{Prediction, Preset, PresetName};

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0xff) else {
        return;
    };
    let (Ok(name), Ok(body)) = (
        std::str::from_utf8(&data[..split]),
        serde_json::from_slice::<Value>(&data[split + 1..]),
    ) else {
        return;
    };
    let label_output = (!name.is_empty()).then(|| name.to_string());
    for preset_name in PresetName::ALL {
        let preset = Preset::named(preset_name, label_output.clone(), Some(name.to_string()));
        let found = preset.extract(&body);
        assert_eq!(
            found,
            preset.extract(&body.clone()),
            "extraction is deterministic"
        );
        let Some(prediction) = found else {
            continue;
        };
        check(&prediction);
        match &preset {
            Preset::None => panic!("no extraction, yet a prediction"),
            Preset::Predictions => {
                assert_eq!(Some(&prediction.values), body.get("predictions"));
                rows_bound(&prediction, &prediction.values);
            }
            Preset::Pointer(pointer) => {
                assert_eq!(Some(&prediction.values), body.pointer(pointer));
                rows_bound(&prediction, &prediction.values);
            }
            Preset::KserveV2 { .. } => {
                let tensors = prediction.values.as_object().expect("outputs by name");
                assert!(!tensors.is_empty());
                let outputs = body["outputs"].as_array().expect("read from `outputs`");
                assert!(tensors.len() <= outputs.len());
            }
        }
    }
});

fn check(prediction: &Prediction) {
    assert!(prediction.scores.iter().all(|s| s.is_finite()));
    match argmax(&prediction.scores) {
        Some(i) => assert!(i < prediction.scores.len()),
        None => assert!(prediction.scores.is_empty()),
    }
    let _ = serde_json::to_string(prediction).expect("a prediction serialises");
}

/// `predictions`-style values: a label and a score per row at most (a scalar is one row).
fn rows_bound(prediction: &Prediction, values: &Value) {
    let rows = values.as_array().map_or(1, Vec::len);
    assert!(prediction.labels.is_empty() || prediction.labels.len() == rows);
    assert!(prediction.scores.is_empty() || prediction.scores.len() == rows);
}
