//! The two model-serving gRPC APIs shadowtap knows, decoded into the JSON shape of their REST
//! APIs so that the REST presets' prediction extraction (labels, scores) and default ignores
//! apply to them unchanged.
//!
//! - [`GrpcPreset::KserveV2`]: the Open Inference Protocol's
//!   `/inference.GRPCInferenceService/ModelInfer` (KServe, Triton, MLServer) and Triton's
//!   streaming `ModelStreamInfer`. A `ModelInferResponse` becomes the REST response
//!   `{model_name, model_version, id, parameters, outputs: [{name, datatype, shape, parameters,
//!   data}]}`, `data` taken from the tensor's `contents` or, when the server sent
//!   `raw_output_contents`, decoded from those bytes by `datatype` (little-endian `BOOL`,
//!   `INT8`..`INT64`, `UINT8`..`UINT64`, `FP16`, `BF16`, `FP32`, `FP64`; `BYTES` as 4-byte
//!   length-prefixed elements, each a string when UTF-8, else base64). Parameters become plain
//!   values.
//! - [`GrpcPreset::TfServing`]: `/tensorflow.serving.PredictionService/Predict`. A
//!   `PredictResponse` becomes TF Serving's REST row format: `{"predictions": …}` holding the
//!   one output tensor as nested arrays by its shape, or, with several outputs of one batch
//!   size, one `{name: row}` object per row; outputs of different batch sizes are given
//!   column-wise as `{"outputs": {name: tensor}}`. `model_spec` is kept (and ignored by
//!   default). Tensor values are read by `dtype` from the `*_val` fields (a single value fills
//!   the shape, as TensorProto's version 0 says) or from `tensor_content`; `DT_STRING` values
//!   are strings, or `{"b64": …}` when not UTF-8, as the REST API writes them; complex values
//!   are `[re, im]`; half and bfloat16 values are floats.
//!
//! The message definitions are shadowtap's own, written from the published field numbers
//! (`proto/`), and compiled once at first use.

use super::MessageDecodeError;
use super::schema::{self, ImportResult, ProtoFile, ProtoSchema};
use base64::Engine;
use prost_reflect::{DynamicMessage, MapKey, Value as PValue};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// The most tensor elements one message may expand to: decoding stops with
/// [`MessageDecodeError::TooLarge`] past it (a few hundred MiB of JSON values).
pub const MAX_ELEMENTS: usize = 1 << 22;

/// The most elements a TensorProto's single value may fill (its version 0 rule): the one case
/// where a few bytes stand for many elements, so it has a cap of its own.
pub const MAX_FILL: usize = 1 << 16;

/// A model-serving gRPC API decoded into its REST shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcPreset {
    /// Open Inference Protocol (KServe v2) `ModelInfer`.
    KserveV2,
    /// TensorFlow Serving `Predict`.
    TfServing,
}

const KSERVE_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
const KSERVE_STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";
const TF_PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";

const GRPC_PREDICT_V2: &str = include_str!("proto/grpc_predict_v2.proto");
const TF_TENSOR: &str = include_str!("proto/tensorflow/tensor.proto");
const TF_PREDICT_PROTO: &str = include_str!("proto/tensorflow_serving/predict.proto");

/// Turns a decoded message into its REST shape.
type Convert = fn(&DynamicMessage) -> Result<Value, MessageDecodeError>;

fn no_imports(_: &str) -> ImportResult {
    Ok(None)
}

impl GrpcPreset {
    /// The gRPC paths of the methods this preset decodes.
    pub fn method_paths(self) -> &'static [&'static str] {
        match self {
            GrpcPreset::KserveV2 => &[KSERVE_INFER, KSERVE_STREAM_INFER],
            GrpcPreset::TfServing => &[TF_PREDICT],
        }
    }

    /// Whether this preset decodes the method at `path`.
    pub fn handles(self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        self.method_paths().contains(&path)
    }

    /// The compiled message definitions (compiled once per process).
    pub fn schema(self) -> &'static ProtoSchema {
        static KSERVE: OnceLock<ProtoSchema> = OnceLock::new();
        static TF: OnceLock<ProtoSchema> = OnceLock::new();
        let (cell, files): (_, &[(&str, &str)]) = match self {
            GrpcPreset::KserveV2 => (&KSERVE, &[("grpc_predict_v2.proto", GRPC_PREDICT_V2)]),
            GrpcPreset::TfServing => (
                &TF,
                &[
                    ("tensorflow/tensor.proto", TF_TENSOR),
                    ("tensorflow_serving/predict.proto", TF_PREDICT_PROTO),
                ],
            ),
        };
        cell.get_or_init(|| {
            let files: Vec<ProtoFile> = files
                .iter()
                .map(|(name, source)| ProtoFile {
                    name: (*name).into(),
                    source: (*source).into(),
                })
                .collect();
            // The sources are ours and compiled by a unit test: they cannot fail at run time.
            ProtoSchema::compile(&files, no_imports).expect("the embedded .proto files compile")
        })
    }

    /// A response message of `path` (the preset's main method when `None`) in REST shape.
    pub fn response_json(
        self,
        path: Option<&str>,
        bytes: &[u8],
    ) -> Result<Value, MessageDecodeError> {
        let streamed = path.is_some_and(|p| p.split('?').next() == Some(KSERVE_STREAM_INFER));
        let (type_name, convert): (&str, Convert) = match (self, streamed) {
            (GrpcPreset::KserveV2, false) => ("inference.ModelInferResponse", kserve_response),
            (GrpcPreset::KserveV2, true) => {
                ("inference.ModelStreamInferResponse", kserve_stream_response)
            }
            (GrpcPreset::TfServing, _) => ("tensorflow.serving.PredictResponse", tf_response),
        };
        convert(&self.decode(type_name, bytes)?)
    }

    /// A request message of the preset's main method in REST shape:
    /// `{id, parameters, inputs: [{name, datatype, shape, data}], outputs: [{name}]}` for
    /// `ModelInfer`, `{model_spec, inputs: {name: tensor}}` (TF Serving's columnar format) for
    /// `Predict`.
    pub fn request_json(self, bytes: &[u8]) -> Result<Value, MessageDecodeError> {
        match self {
            GrpcPreset::KserveV2 => {
                kserve_request(&self.decode("inference.ModelInferRequest", bytes)?)
            }
            GrpcPreset::TfServing => {
                tf_request(&self.decode("tensorflow.serving.PredictRequest", bytes)?)
            }
        }
    }

    fn decode(self, type_name: &str, bytes: &[u8]) -> Result<DynamicMessage, MessageDecodeError> {
        let desc = self.schema().message(type_name).ok_or_else(|| {
            MessageDecodeError::Tensor(format!("no message type {type_name} in the preset"))
        })?;
        schema::decode(&desc, bytes).map_err(|source| MessageDecodeError::Protobuf {
            message_type: type_name.to_string(),
            source,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading dynamic messages

fn field<'a>(m: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, PValue>> {
    m.get_field_by_name(name)
}

fn string_field(m: &DynamicMessage, name: &str) -> String {
    field(m, name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn messages(m: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    field(m, name)
        .and_then(|v| {
            v.as_list()
                .map(|l| l.iter().filter_map(|x| x.as_message().cloned()).collect())
        })
        .unwrap_or_default()
}

fn list(m: &DynamicMessage, name: &str) -> Vec<PValue> {
    field(m, name)
        .and_then(|v| v.as_list().map(<[PValue]>::to_vec))
        .unwrap_or_default()
}

/// A float32 as the shortest decimal that reads back as it (0.1f32 is 0.1); NaN and infinities
/// are `null`, as in the REST APIs' JSON.
fn f32_json(f: f32) -> Value {
    f.to_string()
        .parse::<f64>()
        .ok()
        .map_or(Value::Null, Value::from)
}

/// Bytes as a string when UTF-8, else base64.
fn bytes_text(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

fn scalar_json(v: &PValue) -> Value {
    match v {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(n) => Value::from(*n),
        PValue::I64(n) => Value::from(*n),
        PValue::U32(n) => Value::from(*n),
        PValue::U64(n) => Value::from(*n),
        PValue::F32(f) => f32_json(*f),
        PValue::F64(f) => Value::from(*f),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => bytes_text(b),
        PValue::EnumNumber(n) => Value::from(*n),
        PValue::Message(m) => schema::to_json(m),
        PValue::List(items) => Value::Array(items.iter().map(scalar_json).collect()),
        PValue::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (map_key(k), scalar_json(v)))
                .collect(),
        ),
    }
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// A map of messages (by string key), sorted by key.
fn message_map(m: &DynamicMessage, name: &str) -> Vec<(String, DynamicMessage)> {
    let mut out: Vec<(String, DynamicMessage)> = field(m, name)
        .and_then(|v| {
            v.as_map().map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((map_key(k), v.as_message()?.clone())))
                    .collect()
            })
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

// ---------------------------------------------------------------------------------------------
// Open Inference Protocol

/// `map<string, InferParameter>` as `{name: value}`.
fn kserve_parameters(m: &DynamicMessage) -> Value {
    Value::Object(
        message_map(m, "parameters")
            .into_iter()
            .map(|(k, p)| {
                let v = p
                    .fields()
                    .next()
                    .map_or(Value::Null, |(_, v)| scalar_json(v));
                (k, v)
            })
            .collect(),
    )
}

fn kserve_shape(t: &DynamicMessage) -> Vec<i64> {
    list(t, "shape").iter().filter_map(PValue::as_i64).collect()
}

/// The `InferTensorContents` field that holds a datatype's elements.
fn contents_field(datatype: &str) -> Option<&'static str> {
    Some(match datatype {
        "BOOL" => "bool_contents",
        "INT8" | "INT16" | "INT32" => "int_contents",
        "INT64" => "int64_contents",
        "UINT8" | "UINT16" | "UINT32" => "uint_contents",
        "UINT64" => "uint64_contents",
        "FP32" => "fp32_contents",
        "FP64" => "fp64_contents",
        "BYTES" => "bytes_contents",
        _ => return None,
    })
}

const CONTENTS_FIELDS: [&str; 8] = [
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
];

/// A tensor's `contents` as a flat array: the field of its datatype, else the first field that
/// has elements (servers are not always strict).
fn contents_data(
    datatype: &str,
    contents: Option<&DynamicMessage>,
) -> Result<Value, MessageDecodeError> {
    let Some(c) = contents else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut items = contents_field(datatype)
        .map(|f| list(c, f))
        .unwrap_or_default();
    if items.is_empty() {
        items = CONTENTS_FIELDS
            .iter()
            .map(|f| list(c, f))
            .find(|l| !l.is_empty())
            .unwrap_or_default();
    }
    if items.len() > MAX_ELEMENTS {
        return Err(MessageDecodeError::TooLarge {
            limit: MAX_ELEMENTS,
        });
    }
    Ok(Value::Array(items.iter().map(scalar_json).collect()))
}

/// `raw_*_contents` bytes of one tensor decoded by its datatype (little-endian, row-major); an
/// unknown datatype's bytes are kept in base64 (compared exactly).
pub fn raw_tensor_data(datatype: &str, raw: &[u8]) -> Result<Value, MessageDecodeError> {
    fn fixed<const N: usize>(
        datatype: &str,
        raw: &[u8],
        read: impl Fn([u8; N]) -> Value,
    ) -> Result<Value, MessageDecodeError> {
        if !raw.len().is_multiple_of(N) {
            return Err(MessageDecodeError::Tensor(format!(
                "{} raw bytes are not a whole number of {datatype} elements ({N} bytes each)",
                raw.len()
            )));
        }
        if raw.len() / N > MAX_ELEMENTS {
            return Err(MessageDecodeError::TooLarge {
                limit: MAX_ELEMENTS,
            });
        }
        Ok(Value::Array(
            raw.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    read(a)
                })
                .collect(),
        ))
    }
    match datatype {
        "BOOL" => fixed::<1>(datatype, raw, |[b]| Value::Bool(b != 0)),
        "UINT8" => fixed::<1>(datatype, raw, |[b]| Value::from(b)),
        "INT8" => fixed::<1>(datatype, raw, |a| Value::from(i8::from_le_bytes(a))),
        "UINT16" => fixed::<2>(datatype, raw, |a| Value::from(u16::from_le_bytes(a))),
        "INT16" => fixed::<2>(datatype, raw, |a| Value::from(i16::from_le_bytes(a))),
        "UINT32" => fixed::<4>(datatype, raw, |a| Value::from(u32::from_le_bytes(a))),
        "INT32" => fixed::<4>(datatype, raw, |a| Value::from(i32::from_le_bytes(a))),
        "UINT64" => fixed::<8>(datatype, raw, |a| Value::from(u64::from_le_bytes(a))),
        "INT64" => fixed::<8>(datatype, raw, |a| Value::from(i64::from_le_bytes(a))),
        "FP16" => fixed::<2>(datatype, raw, |a| {
            f32_json(f16_to_f32(u16::from_le_bytes(a)))
        }),
        "BF16" => fixed::<2>(datatype, raw, |a| {
            f32_json(f32::from_bits(u32::from(u16::from_le_bytes(a)) << 16))
        }),
        "FP32" => fixed::<4>(datatype, raw, |a| f32_json(f32::from_le_bytes(a))),
        "FP64" => fixed::<8>(datatype, raw, |a| Value::from(f64::from_le_bytes(a))),
        "BYTES" => raw_bytes_elements(raw),
        _ => Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(raw),
        )),
    }
}

/// `BYTES` raw contents: each element a 4-byte little-endian length and that many bytes.
fn raw_bytes_elements(raw: &[u8]) -> Result<Value, MessageDecodeError> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let cut = || MessageDecodeError::Tensor("BYTES raw contents end inside an element".into());
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(cut)?;
        let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| cut())?;
        let element = tail.get(..len).ok_or_else(cut)?;
        if out.len() == MAX_ELEMENTS {
            return Err(MessageDecodeError::TooLarge {
                limit: MAX_ELEMENTS,
            });
        }
        out.push(bytes_text(element));
        rest = &tail[len..];
    }
    Ok(Value::Array(out))
}

/// IEEE 754 half precision to single (exact: every half is a float).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Input or output tensors in REST shape, `data` from `contents` or the raw bytes at the same
/// index.
fn kserve_tensors(
    tensors: &[DynamicMessage],
    raw: &[PValue],
) -> Result<Vec<Value>, MessageDecodeError> {
    let mut elements = 0usize;
    tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let datatype = string_field(t, "datatype");
            let data = if raw.is_empty() {
                let contents = field(t, "contents").and_then(|c| c.as_message().cloned());
                contents_data(&datatype, contents.as_ref())?
            } else {
                let bytes = raw.get(i).and_then(PValue::as_bytes).ok_or_else(|| {
                    MessageDecodeError::Tensor(format!(
                        "raw contents has {} entries, tensor {i} has none",
                        raw.len()
                    ))
                })?;
                raw_tensor_data(&datatype, bytes)?
            };
            elements += data.as_array().map_or(1, Vec::len);
            if elements > MAX_ELEMENTS {
                return Err(MessageDecodeError::TooLarge {
                    limit: MAX_ELEMENTS,
                });
            }
            let mut o = Map::new();
            o.insert("name".into(), Value::String(string_field(t, "name")));
            o.insert("datatype".into(), Value::String(datatype));
            o.insert("shape".into(), json!(kserve_shape(t)));
            let parameters = kserve_parameters(t);
            if parameters.as_object().is_some_and(|p| !p.is_empty()) {
                o.insert("parameters".into(), parameters);
            }
            o.insert("data".into(), data);
            Ok(Value::Object(o))
        })
        .collect()
}

fn kserve_response(m: &DynamicMessage) -> Result<Value, MessageDecodeError> {
    let outputs = kserve_tensors(&messages(m, "outputs"), &list(m, "raw_output_contents"))?;
    Ok(json!({
        "model_name": string_field(m, "model_name"),
        "model_version": string_field(m, "model_version"),
        "id": string_field(m, "id"),
        "parameters": kserve_parameters(m),
        "outputs": outputs,
    }))
}

/// Triton's stream message: the inner response in REST shape, with `error_message` when set.
fn kserve_stream_response(m: &DynamicMessage) -> Result<Value, MessageDecodeError> {
    let inner = m
        .has_field_by_name("infer_response")
        .then(|| field(m, "infer_response").and_then(|v| v.as_message().cloned()))
        .flatten();
    let mut out = match inner {
        Some(inner) => kserve_response(&inner)?,
        None => json!({}),
    };
    let error = string_field(m, "error_message");
    if let (false, Some(o)) = (error.is_empty(), out.as_object_mut()) {
        o.insert("error_message".into(), Value::String(error));
    }
    Ok(out)
}

fn kserve_request(m: &DynamicMessage) -> Result<Value, MessageDecodeError> {
    let inputs = kserve_tensors(&messages(m, "inputs"), &list(m, "raw_input_contents"))?;
    let outputs: Vec<Value> = messages(m, "outputs")
        .iter()
        .map(|o| json!({"name": string_field(o, "name")}))
        .collect();
    Ok(json!({
        "model_name": string_field(m, "model_name"),
        "model_version": string_field(m, "model_version"),
        "id": string_field(m, "id"),
        "parameters": kserve_parameters(m),
        "inputs": inputs,
        "outputs": outputs,
    }))
}

// ---------------------------------------------------------------------------------------------
// TensorFlow Serving

/// `tensorflow.DataType` numbers (types.proto).
mod dt {
    pub const FLOAT: i32 = 1;
    pub const DOUBLE: i32 = 2;
    pub const INT32: i32 = 3;
    pub const UINT8: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT8: i32 = 6;
    pub const STRING: i32 = 7;
    pub const COMPLEX64: i32 = 8;
    pub const INT64: i32 = 9;
    pub const BOOL: i32 = 10;
    pub const QINT8: i32 = 11;
    pub const QUINT8: i32 = 12;
    pub const QINT32: i32 = 13;
    pub const BFLOAT16: i32 = 14;
    pub const QINT16: i32 = 15;
    pub const QUINT16: i32 = 16;
    pub const UINT16: i32 = 17;
    pub const COMPLEX128: i32 = 18;
    pub const HALF: i32 = 19;
    pub const UINT32: i32 = 22;
    pub const UINT64: i32 = 23;
}

/// Pairs of numbers as `[re, im]`.
fn complex(flat: Vec<Value>) -> Vec<Value> {
    flat.chunks(2).map(|c| Value::Array(c.to_vec())).collect()
}

/// A TensorProto's elements, flat, by dtype: from the `*_val` field, else `tensor_content`.
fn tf_elements(t: &DynamicMessage) -> Result<Vec<Value>, MessageDecodeError> {
    let dtype = field(t, "dtype")
        .and_then(|v| v.as_enum_number())
        .unwrap_or(0);
    let content = field(t, "tensor_content")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let vals = |name: &str| list(t, name).iter().map(scalar_json).collect::<Vec<_>>();
    let half = |name: &str, bf16: bool| {
        list(t, name)
            .iter()
            .filter_map(PValue::as_i32)
            .map(|bits| {
                let h = (bits & 0xffff) as u16;
                f32_json(if bf16 {
                    f32::from_bits(u32::from(h) << 16)
                } else {
                    f16_to_f32(h)
                })
            })
            .collect::<Vec<_>>()
    };
    let raw = |oip: &str| -> Result<Vec<Value>, MessageDecodeError> {
        match raw_tensor_data(oip, &content)? {
            Value::Array(a) => Ok(a),
            other => Ok(vec![other]),
        }
    };
    let from = |val: Vec<Value>, oip: &str| {
        if val.is_empty() && !content.is_empty() {
            raw(oip)
        } else {
            Ok(val)
        }
    };
    match dtype {
        dt::FLOAT => from(vals("float_val"), "FP32"),
        dt::DOUBLE => from(vals("double_val"), "FP64"),
        dt::INT32 | dt::QINT32 => from(vals("int_val"), "INT32"),
        dt::INT16 | dt::QINT16 => from(vals("int_val"), "INT16"),
        dt::INT8 | dt::QINT8 => from(vals("int_val"), "INT8"),
        dt::UINT8 | dt::QUINT8 => from(vals("int_val"), "UINT8"),
        dt::UINT16 | dt::QUINT16 => from(vals("int_val"), "UINT16"),
        dt::INT64 => from(vals("int64_val"), "INT64"),
        dt::UINT32 => from(vals("uint32_val"), "UINT32"),
        dt::UINT64 => from(vals("uint64_val"), "UINT64"),
        dt::BOOL => from(vals("bool_val"), "BOOL"),
        dt::HALF => from(half("half_val", false), "FP16"),
        dt::BFLOAT16 => from(half("half_val", true), "BF16"),
        dt::COMPLEX64 => from(vals("scomplex_val"), "FP32").map(complex),
        dt::COMPLEX128 => from(vals("dcomplex_val"), "FP64").map(complex),
        dt::STRING => Ok(list(t, "string_val")
            .iter()
            .map(|v| match v.as_bytes() {
                Some(b) => match std::str::from_utf8(b) {
                    Ok(s) => Value::String(s.to_string()),
                    Err(_) => json!({"b64": base64::engine::general_purpose::STANDARD.encode(b)}),
                },
                None => Value::Null,
            })
            .collect()),
        // Resource, variant and unknown types: the raw content, compared exactly.
        _ => Ok(if content.is_empty() {
            Vec::new()
        } else {
            vec![json!({"b64": base64::engine::general_purpose::STANDARD.encode(&content)})]
        }),
    }
}

/// A TensorProto as nested arrays by its shape (a scalar for rank 0).
fn tf_tensor(t: &DynamicMessage) -> Result<(Vec<usize>, Value), MessageDecodeError> {
    let shape: Vec<usize> = field(t, "tensor_shape")
        .and_then(|s| s.as_message().cloned())
        .map(|s| {
            messages(&s, "dim")
                .iter()
                .map(|d| {
                    let size = field(d, "size").and_then(|v| v.as_i64()).unwrap_or(0);
                    usize::try_from(size).unwrap_or(0)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut flat = tf_elements(t)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .unwrap_or(usize::MAX);
    if flat.len() == 1 && count > 1 {
        // TensorProto version 0: one value fills the whole shape.
        if count > MAX_FILL {
            return Err(MessageDecodeError::TooLarge { limit: MAX_FILL });
        }
        flat = vec![flat[0].clone(); count];
    }
    if flat.len() > MAX_ELEMENTS {
        return Err(MessageDecodeError::TooLarge {
            limit: MAX_ELEMENTS,
        });
    }
    // An empty tensor is nested as empty arrays: as many as the dimensions before its first 0.
    let outer = shape
        .iter()
        .take_while(|d| **d != 0)
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .unwrap_or(usize::MAX);
    if count == 0 && outer > MAX_FILL {
        return Err(MessageDecodeError::TooLarge { limit: MAX_FILL });
    }
    let value = if shape.is_empty() && flat.len() == 1 {
        flat.swap_remove(0)
    } else if flat.len() == count && !shape.is_empty() {
        nest(&flat, &shape)
    } else {
        // Values that do not fill the shape: kept flat rather than guessed into rows.
        Value::Array(flat)
    };
    Ok((shape, value))
}

/// `flat` (row-major) nested by `shape`; `flat.len()` is the product of `shape`.
fn nest(flat: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] | [_] => Value::Array(flat.to_vec()),
        [first, rest @ ..] => {
            let width = rest.iter().product::<usize>();
            if width == 0 {
                // No elements: empty arrays nested as the shape says, as many as the dimensions
                // before the first 0 (capped by the caller).
                return Value::Array((0..*first).map(|_| nest(&[], rest)).collect());
            }
            Value::Array(flat.chunks(width).map(|c| nest(c, rest)).collect())
        }
    }
}

fn tf_tensors(
    m: &DynamicMessage,
    name: &str,
) -> Result<Vec<(String, Vec<usize>, Value)>, MessageDecodeError> {
    let mut elements = 0usize;
    message_map(m, name)
        .into_iter()
        .map(|(k, t)| {
            let (shape, v) = tf_tensor(&t)?;
            let count = shape.iter().fold(1usize, |acc, d| acc.saturating_mul(*d));
            elements = elements.saturating_add(count.max(1));
            if elements > MAX_ELEMENTS {
                return Err(MessageDecodeError::TooLarge {
                    limit: MAX_ELEMENTS,
                });
            }
            Ok((k, shape, v))
        })
        .collect()
}

fn model_spec(m: &DynamicMessage) -> Value {
    if !m.has_field_by_name("model_spec") {
        return Value::Null;
    }
    field(m, "model_spec")
        .and_then(|v| v.as_message().map(schema::to_json))
        .unwrap_or(Value::Null)
}

fn tf_response(m: &DynamicMessage) -> Result<Value, MessageDecodeError> {
    let outputs = tf_tensors(m, "outputs")?;
    let mut out = Map::new();
    out.insert("model_spec".into(), model_spec(m));
    match outputs.as_slice() {
        [] => {
            out.insert("predictions".into(), Value::Array(Vec::new()));
        }
        [(_, _, value)] => {
            out.insert("predictions".into(), value.clone());
        }
        many => {
            let batch = many[0].1.first().copied();
            let same_batch = batch.is_some()
                && many.iter().all(|(_, shape, v)| {
                    shape.first().copied() == batch
                        && v.as_array().is_some_and(|a| Some(a.len()) == batch)
                });
            if let (true, Some(rows)) = (same_batch, batch) {
                let predictions = (0..rows)
                    .map(|i| {
                        Value::Object(
                            many.iter()
                                .map(|(k, _, v)| (k.clone(), v[i].clone()))
                                .collect(),
                        )
                    })
                    .collect();
                out.insert("predictions".into(), Value::Array(predictions));
            } else {
                out.insert(
                    "outputs".into(),
                    Value::Object(
                        many.iter()
                            .map(|(k, _, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                );
            }
        }
    }
    Ok(Value::Object(out))
}

fn tf_request(m: &DynamicMessage) -> Result<Value, MessageDecodeError> {
    let inputs = tf_tensors(m, "inputs")?;
    Ok(json!({
        "model_spec": model_spec(m),
        "inputs": Value::Object(inputs.into_iter().map(|(k, _, v)| (k, v)).collect()),
    }))
}

#[cfg(test)]
mod tests;
