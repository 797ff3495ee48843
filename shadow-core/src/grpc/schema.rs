//! `.proto` sources compiled at run time (protox: a protobuf compiler in pure Rust, no
//! `protoc`), and protobuf messages decoded by their descriptors into JSON.
//!
//! Sources come in as text ([`ProtoFile`]); imports that are not among them are asked of a
//! caller-supplied function (the daemon reads them from `--proto-include` directories), then
//! of protox's copies of the well-known types (`google/protobuf/*.proto`). No file is opened
//! here.
//!
//! JSON is the canonical proto3 JSON mapping with the proto field names (`model_name`, as the
//! REST APIs spell them), 64-bit integers as numbers (so numeric tolerances apply), enums by
//! name, bytes in base64, and every field present, defaults included (a field at 0 on one side
//! and 1 on the other diffs as a number, not as a missing field).

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use protox::file::{File, FileResolver, GoogleFileResolver};
use serde_json::Value;
use std::collections::BTreeMap;

/// One `.proto` source: its import name (`acme/fraud/v1/score.proto`) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoFile {
    /// The name other files import it by, relative to its include directory.
    pub name: String,
    /// The `.proto` text.
    pub source: String,
}

/// The message types of one gRPC method.
#[derive(Clone, Debug)]
pub struct MethodTypes {
    /// The request message.
    pub input: MessageDescriptor,
    /// The response message.
    pub output: MessageDescriptor,
    /// Whether the server answers with a stream of messages.
    pub server_streaming: bool,
}

/// Compiled `.proto` files: their messages, and the methods of their services by gRPC path.
#[derive(Clone, Debug)]
pub struct ProtoSchema {
    pool: DescriptorPool,
    methods: BTreeMap<String, MethodTypes>,
}

/// `.proto` files that do not compile.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A syntax or type error, a missing import, ...: `file:line:column: what` (protox's
    /// located form).
    #[error("the .proto files do not compile: {0:?}")]
    Compile(#[source] protox::Error),
    /// Compiled, but no file defines a service: no gRPC method would be decoded with them.
    #[error(
        "the .proto files define no service: give the file with the `service` whose methods \
         production serves (its imports are found through the include directories)"
    )]
    NoService,
}

/// What an import function answers: the file's text, `None` when it has no such file, or why
/// it could not be read.
pub type ImportResult = Result<Option<String>, String>;

struct Resolver {
    files: Vec<ProtoFile>,
    imports: Box<dyn Fn(&str) -> ImportResult>,
    google: GoogleFileResolver,
}

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if let Some(f) = self.files.iter().find(|f| f.name == name) {
            return File::from_source(name, &f.source);
        }
        match (self.imports)(name) {
            Ok(Some(source)) => File::from_source(name, &source),
            Ok(None) => self.google.open_file(name),
            Err(message) => Err(protox::Error::new(format!("{name}: {message}"))),
        }
    }
}

impl ProtoSchema {
    /// Compiles `files` (every one of them a root; their imports come from `files`, then
    /// `imports`, then the well-known types). At least one service must be defined.
    pub fn compile(
        files: &[ProtoFile],
        imports: impl Fn(&str) -> ImportResult + 'static,
    ) -> Result<ProtoSchema, SchemaError> {
        let resolver = Resolver {
            files: files.to_vec(),
            imports: Box::new(imports),
            google: GoogleFileResolver::new(),
        };
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_files(files.iter().map(|f| f.name.as_str()))
            .map_err(SchemaError::Compile)?;
        let schema = ProtoSchema::of_pool(compiler.descriptor_pool());
        if schema.methods.is_empty() {
            return Err(SchemaError::NoService);
        }
        Ok(schema)
    }

    /// The schema of an already built pool.
    pub fn of_pool(pool: DescriptorPool) -> ProtoSchema {
        let mut methods = BTreeMap::new();
        for service in pool.services() {
            for m in service.methods() {
                methods.insert(
                    format!("/{}/{}", service.full_name(), m.name()),
                    MethodTypes {
                        input: m.input(),
                        output: m.output(),
                        server_streaming: m.is_server_streaming(),
                    },
                );
            }
        }
        ProtoSchema { pool, methods }
    }

    /// The types of the method a request's `:path` (`/package.Service/Method`) names; a query
    /// string, never sent by gRPC clients, is ignored.
    pub fn method(&self, path: &str) -> Option<&MethodTypes> {
        let path = path.split('?').next().unwrap_or(path);
        self.methods.get(path)
    }

    /// Every method's path, sorted.
    pub fn method_paths(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// A message type by its full name (`inference.ModelInferResponse`).
    pub fn message(&self, full_name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(full_name)
    }

    /// The descriptor pool.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }
}

/// Decodes `bytes` as a `message`.
pub fn decode(
    message: &MessageDescriptor,
    bytes: &[u8],
) -> Result<DynamicMessage, prost::DecodeError> {
    DynamicMessage::decode(message.clone(), bytes)
}

/// A decoded message as JSON (see the module documentation for the mapping).
pub fn to_json(message: &DynamicMessage) -> Value {
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(false)
        .use_proto_field_name(true)
        .skip_default_fields(false);
    // Serialising into a `Value` cannot fail: every key is a string, every number finite or
    // written as a string ("NaN", "Infinity") by the proto3 JSON mapping.
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(Value::Null)
}

/// `bytes` decoded as a `message`, as JSON.
pub fn decode_json(message: &MessageDescriptor, bytes: &[u8]) -> Result<Value, prost::DecodeError> {
    decode(message, bytes).map(|m| to_json(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCORE: &str = r#"
        syntax = "proto3";
        package acme.fraud.v1;
        import "acme/common.proto";
        service Scorer {
          rpc Score(ScoreRequest) returns (ScoreResponse);
          rpc Watch(ScoreRequest) returns (stream ScoreResponse);
        }
        message ScoreRequest { string id = 1; repeated double features = 2; }
        message ScoreResponse {
          acme.Label label = 1;
          double score = 2;
          int64 count = 3;
          bytes blob = 4;
        }
    "#;
    const COMMON: &str = r#"
        syntax = "proto3";
        package acme;
        enum Label { LABEL_UNSPECIFIED = 0; FRAUD = 1; OK = 2; }
    "#;

    fn score_file() -> ProtoFile {
        ProtoFile {
            name: "acme/fraud/v1/score.proto".into(),
            source: SCORE.into(),
        }
    }

    fn imports(name: &str) -> ImportResult {
        Ok((name == "acme/common.proto").then(|| COMMON.to_string()))
    }

    #[test]
    fn compiles_with_imports_and_finds_methods_by_path() {
        let schema = ProtoSchema::compile(&[score_file()], imports).unwrap();
        let paths: Vec<&str> = schema.method_paths().collect();
        assert_eq!(
            paths,
            ["/acme.fraud.v1.Scorer/Score", "/acme.fraud.v1.Scorer/Watch"]
        );
        let m = schema.method("/acme.fraud.v1.Scorer/Score").unwrap();
        assert_eq!(m.output.full_name(), "acme.fraud.v1.ScoreResponse");
        assert!(!m.server_streaming);
        assert!(
            schema
                .method("/acme.fraud.v1.Scorer/Watch")
                .unwrap()
                .server_streaming
        );
        assert!(schema.method("/acme.fraud.v1.Scorer/Nope").is_none());
    }

    #[test]
    fn json_uses_proto_names_numbers_and_enum_names() {
        let schema = ProtoSchema::compile(&[score_file()], imports).unwrap();
        let desc = schema.message("acme.fraud.v1.ScoreResponse").unwrap();
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_name("label", prost_reflect::Value::EnumNumber(1));
        m.set_field_by_name("score", prost_reflect::Value::F64(0.75));
        m.set_field_by_name("count", prost_reflect::Value::I64(1 << 40));
        let bytes = prost::Message::encode_to_vec(&m);
        assert_eq!(
            decode_json(&desc, &bytes).unwrap(),
            json!({"label": "FRAUD", "score": 0.75, "count": 1u64 << 40, "blob": ""})
        );
        // Bytes that are not this message.
        assert!(decode_json(&desc, &[0x0a]).is_err());
    }

    #[test]
    fn compile_errors_say_what_is_wrong() {
        let missing = ProtoSchema::compile(&[score_file()], |_| Ok(None)).unwrap_err();
        assert!(
            missing.to_string().contains("acme/common.proto"),
            "{missing}"
        );
        let unreadable =
            ProtoSchema::compile(&[score_file()], |_| Err("permission denied".into())).unwrap_err();
        assert!(matches!(unreadable, SchemaError::Compile(_)));
        let bad = ProtoFile {
            name: "bad.proto".into(),
            source: "syntax = \"proto3\"; message M { int32 x = ; }".into(),
        };
        let err = ProtoSchema::compile(&[bad], |_| Ok(None)).unwrap_err();
        assert!(matches!(err, SchemaError::Compile(_)), "{err}");
        assert!(err.to_string().contains("bad.proto:1:"), "located: {err}");
        let no_service = ProtoFile {
            name: "m.proto".into(),
            source: "syntax = \"proto3\"; message M { int32 x = 1; }".into(),
        };
        assert!(matches!(
            ProtoSchema::compile(&[no_service], |_| Ok(None)),
            Err(SchemaError::NoService)
        ));
    }
}
