//! Generates the Open Inference Protocol gRPC types (prost messages, tonic server and client)
//! from the repository's one copy of the protocol,
//! `shadow-core/src/grpc/proto/grpc_predict_v2.proto`, without `protoc`: `protox` compiles the .proto in pure
//! Rust into a `FileDescriptorSet`, which `tonic-prost-build` turns into Rust in `OUT_DIR`.

use std::error::Error;

const PROTO_DIR: &str = "../shadow-core/src/grpc/proto";
const PROTO: &str = "../shadow-core/src/grpc/proto/grpc_predict_v2.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile(["grpc_predict_v2.proto"], [PROTO_DIR])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
