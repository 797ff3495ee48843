//! The Open Inference Protocol's gRPC API (`inference.GRPCInferenceService`, tonic over h2c),
//! served next to the HTTP/1.1 server from the same [`ServerState`], and the tensor helpers
//! its clients share.
//!
//! `ModelInfer` takes what the HTTP API takes (one `FP64`/`FP32` input of shape `[B, 11]`, in
//! `contents` or in `raw_input_contents`) and answers `probabilities` (`FP64`, `[B, C]`) and
//! `label` (`INT64`, `[B]`), restricted to the requested outputs. The elements go in each
//! output's `contents`, or, with [`OutputEncoding::Raw`] or the request parameter
//! [`RAW_OUTPUT_PARAMETER`] = `true`, in `raw_output_contents` (little-endian, row-major, one
//! entry per output; the protocol allows no mix of the two in one answer). The demo serves
//! production with `contents` and the shadow with raw outputs, so a comparer must decode both.
//!
//! Errors are gRPC statuses: `INVALID_ARGUMENT` for malformed input (the HTTP API's 400),
//! `NOT_FOUND` for an unknown model or version (404).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::dataset::N_FEATURES;
use crate::model::labels_from_proba;
use crate::oip::{self, OUTPUT_LABEL, OUTPUT_PROBABILITIES};
use crate::server::ServerState;

/// The generated protobuf messages, server and client of
/// `shadow-core/src/grpc/proto/grpc_predict_v2.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_response::InferOutputTensor;
use pb::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

/// Request parameter (`bool_param`) asking for the outputs in `raw_output_contents`.
pub const RAW_OUTPUT_PARAMETER: &str = "raw_output_contents";

/// Where `ModelInfer` puts the output elements by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputEncoding {
    /// In each output's typed `contents` (`fp64_contents`, `int64_contents`).
    #[default]
    Contents,
    /// In `raw_output_contents`, little-endian bytes, one entry per output.
    Raw,
}

/// The `GRPCInferenceService` implementation over a [`ServerState`].
#[derive(Debug, Clone)]
pub struct InferenceService {
    state: Arc<ServerState>,
    outputs: OutputEncoding,
}

impl InferenceService {
    /// Answers from `state`, with the output elements encoded as `outputs` says by default.
    pub fn new(state: Arc<ServerState>, outputs: OutputEncoding) -> Self {
        Self { state, outputs }
    }

    /// The tonic service: accepts gzip-compressed requests and gzips answers to clients that
    /// accept it.
    pub fn into_server(self) -> GrpcInferenceServiceServer<Self> {
        GrpcInferenceServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
    }

    fn check_model(&self, name: &str, version: &str) -> Result<(), Status> {
        if name != self.state.name() {
            return Err(Status::not_found(format!(
                "unknown model {name:?} (serving {:?})",
                self.state.name()
            )));
        }
        if !version.is_empty() && version != self.state.version() {
            return Err(Status::not_found(format!(
                "model {name:?} has no version {version:?} (serving {:?})",
                self.state.version()
            )));
        }
        Ok(())
    }
}

/// Serves the gRPC API on `listener` (HTTP/2 prior knowledge) until `shutdown` completes,
/// then lets in-flight calls finish.
pub async fn serve_grpc(
    listener: TcpListener,
    service: InferenceService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    /// Streaming inference is Triton's addition; the demo models answer unary calls only.
    type ModelStreamInferStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>,
    >;

    async fn model_stream_infer(
        &self,
        _: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        Err(Status::unimplemented(
            "the demo serves ModelInfer; ModelStreamInfer is not served",
        ))
    }

    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        self.check_model(&r.name, &r.version)?;
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "shadowtap-demo-model".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        self.check_model(&r.name, &r.version)?;
        let meta = self.state.metadata();
        let tensors = |list: Vec<oip::TensorMetadata>| {
            list.into_iter()
                .map(|t| pb::model_metadata_response::TensorMetadata {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: meta.name,
            versions: meta.versions,
            platform: meta.platform,
            inputs: tensors(meta.inputs),
            outputs: tensors(meta.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        self.check_model(&request.model_name, &request.model_version)?;
        let x = features(&request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let wanted = requested_outputs(&request)?;
        let state = &self.state;
        let probs = state.model().predict_proba(x.view());
        let labels = labels_from_proba(&probs.view(), state.model().classes());
        state.delay().await;
        let n = state.count_served();
        let raw = self.outputs == OutputEncoding::Raw || asks_for_raw_outputs(&request);
        let mut response = ModelInferResponse {
            model_name: state.name().into(),
            model_version: state.version().into(),
            id: if request.id.is_empty() {
                format!("{}-{n}", state.version())
            } else {
                request.id
            },
            ..Default::default()
        };
        if wanted.probabilities {
            let shape = [probs.nrows() as i64, probs.ncols() as i64];
            push_output(
                &mut response,
                raw,
                (OUTPUT_PROBABILITIES, "FP64", &shape),
                Tensor::Fp64(probs.iter().copied().collect()),
            );
        }
        if wanted.label {
            push_output(
                &mut response,
                raw,
                (OUTPUT_LABEL, "INT64", &[labels.len() as i64]),
                Tensor::Int64(labels.iter().map(|&l| l as i64).collect()),
            );
        }
        Ok(Response::new(response))
    }
}

/// Which outputs a request asked for (all when it named none).
struct Wanted {
    probabilities: bool,
    label: bool,
}

fn requested_outputs(request: &ModelInferRequest) -> Result<Wanted, Status> {
    if request.outputs.is_empty() {
        return Ok(Wanted {
            probabilities: true,
            label: true,
        });
    }
    let mut wanted = Wanted {
        probabilities: false,
        label: false,
    };
    for o in &request.outputs {
        match o.name.as_str() {
            OUTPUT_PROBABILITIES => wanted.probabilities = true,
            OUTPUT_LABEL => wanted.label = true,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown output {other:?}: this model has {OUTPUT_PROBABILITIES:?} and {OUTPUT_LABEL:?}"
                )));
            }
        }
    }
    Ok(wanted)
}

/// Whether the request carries the parameter [`RAW_OUTPUT_PARAMETER`] = `true`.
fn asks_for_raw_outputs(request: &ModelInferRequest) -> bool {
    matches!(
        request.parameters.get(RAW_OUTPUT_PARAMETER),
        Some(InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true))
        })
    )
}

/// The elements of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// `FP64` elements.
    Fp64(Vec<f64>),
    /// `INT64` elements.
    Int64(Vec<i64>),
}

impl Tensor {
    /// Little-endian, row-major bytes, as `raw_*_contents` carries them.
    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            Tensor::Fp64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Tensor::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn into_contents(self) -> InferTensorContents {
        match self {
            Tensor::Fp64(fp64_contents) => InferTensorContents {
                fp64_contents,
                ..Default::default()
            },
            Tensor::Int64(int64_contents) => InferTensorContents {
                int64_contents,
                ..Default::default()
            },
        }
    }
}

fn push_output(
    response: &mut ModelInferResponse,
    raw: bool,
    (name, datatype, shape): (&str, &str, &[i64]),
    tensor: Tensor,
) {
    let mut output = InferOutputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    };
    if raw {
        response.raw_output_contents.push(tensor.to_raw());
    } else {
        output.contents = Some(tensor.into_contents());
    }
    response.outputs.push(output);
}

/// The request's single input as a `B x 11` matrix, from `contents` (`fp64_contents` or
/// `fp32_contents`) or from `raw_input_contents`.
fn features(request: &ModelInferRequest) -> Result<ndarray::Array2<f64>, oip::InvalidInput> {
    let invalid = |m: String| oip::InvalidInput(m);
    let [input] = request.inputs.as_slice() else {
        return Err(invalid(format!(
            "expected exactly one input tensor, got {}",
            request.inputs.len()
        )));
    };
    oip::check_datatype(&input.name, &input.datatype)?;
    let rows = oip::batch_rows(&input.name, &input.shape, N_FEATURES)?;
    let needed = rows * N_FEATURES;
    let values: Vec<f64> = match (request.raw_input_contents.as_slice(), &input.contents) {
        ([], Some(c)) if input.datatype == "FP64" => c.fp64_contents.clone(),
        ([], Some(c)) => c.fp32_contents.iter().map(|&x| f64::from(x)).collect(),
        ([], None) => return Err(invalid(format!("input {:?} has no data", input.name))),
        ([raw], None) => decode_raw_floats(raw, &input.datatype).ok_or_else(|| {
            invalid(format!(
                "input {:?}: raw contents of {} bytes are not whole {} elements",
                input.name,
                raw.len(),
                input.datatype
            ))
        })?,
        ([_], Some(_)) => {
            return Err(invalid(
                "input has both contents and raw_input_contents".into(),
            ));
        }
        (raw, _) => {
            return Err(invalid(format!(
                "{} raw_input_contents entries for 1 input",
                raw.len()
            )));
        }
    };
    if values.len() != needed {
        return Err(invalid(format!(
            "input {:?}: shape {:?} needs {needed} elements, data has {}",
            input.name,
            input.shape,
            values.len()
        )));
    }
    if let Some(bad) = values.iter().find(|x| !x.is_finite()) {
        return Err(invalid(format!("{bad} is not a finite number")));
    }
    ndarray::Array2::from_shape_vec((rows, N_FEATURES), values).map_err(|e| invalid(e.to_string()))
}

fn decode_raw_floats(raw: &[u8], datatype: &str) -> Option<Vec<f64>> {
    match datatype {
        "FP64" if raw.len().is_multiple_of(8) => Some(
            raw.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        "FP32" if raw.len().is_multiple_of(4) => Some(
            raw.chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default())))
                .collect(),
        ),
        _ => None,
    }
}

/// The elements of the output called `name`, from its `contents` or from the matching entry of
/// `raw_output_contents` (decoded by the output's datatype, checked against its shape).
pub fn output_tensor(response: &ModelInferResponse, name: &str) -> Result<Tensor, String> {
    let (index, output) = response
        .outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.name == name)
        .ok_or_else(|| format!("no {name:?} output"))?;
    let elements = output
        .shape
        .iter()
        .try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
        .ok_or_else(|| format!("output {name:?}: bad shape {:?}", output.shape))?;
    let tensor = match (output.datatype.as_str(), &output.contents) {
        ("FP64", Some(c)) => Tensor::Fp64(c.fp64_contents.clone()),
        ("INT64", Some(c)) => Tensor::Int64(c.int64_contents.clone()),
        (datatype @ ("FP64" | "INT64"), None) => {
            let raw = response.raw_output_contents.get(index).ok_or_else(|| {
                format!("output {name:?} has neither contents nor raw_output_contents")
            })?;
            if raw.len() != elements * 8 {
                return Err(format!(
                    "output {name:?}: {} raw bytes for shape {:?} of {datatype}",
                    raw.len(),
                    output.shape
                ));
            }
            let words = raw
                .chunks_exact(8)
                .map(|c| c.try_into().unwrap_or_default());
            if datatype == "FP64" {
                Tensor::Fp64(words.map(f64::from_le_bytes).collect())
            } else {
                Tensor::Int64(words.map(i64::from_le_bytes).collect())
            }
        }
        (other, _) => return Err(format!("output {name:?}: datatype {other:?} not expected")),
    };
    let len = match &tensor {
        Tensor::Fp64(v) => v.len(),
        Tensor::Int64(v) => v.len(),
    };
    if len != elements {
        return Err(format!(
            "output {name:?}: {len} elements for shape {:?}",
            output.shape
        ));
    }
    Ok(tensor)
}

/// A `ModelInfer` request for `rows` (row-major, `n_features` each) as one `FP64` input in
/// `contents`, with the request `id`.
pub fn infer_request(
    model: &str,
    id: &str,
    features: &[f64],
    n_features: usize,
) -> ModelInferRequest {
    let rows = features.len() / n_features.max(1);
    ModelInferRequest {
        model_name: model.into(),
        id: id.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: oip::INPUT_NAME.into(),
            datatype: "FP64".into(),
            shape: vec![rows as i64, n_features as i64],
            contents: Some(InferTensorContents {
                fp64_contents: features.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::DEFAULT_SEED;
    use crate::model::ModelKind;
    use crate::oip::{InferenceResponse, TensorData, request_body};
    use crate::server::serve;
    use crate::traffic::{Protocol, TrafficConfig, plan_jobs, run};
    use crate::training::train_demo_model;
    use crate::{Split, WineData};
    use pb::grpc_inference_service_client::GrpcInferenceServiceClient;
    use shadowtap_test_support::http;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::oneshot;
    use tokio_stream::StreamExt;
    use tonic::transport::Channel;

    /// Both APIs over one v2 model (it trains in milliseconds even in debug builds).
    struct Servers {
        http: SocketAddr,
        grpc: SocketAddr,
        /// TCP connections the gRPC server accepted.
        grpc_connections: Arc<AtomicUsize>,
        held_out_accuracy: f64,
        stop: Vec<oneshot::Sender<()>>,
    }

    impl Servers {
        async fn start(outputs: OutputEncoding) -> Servers {
            let trained = train_demo_model(ModelKind::V2, DEFAULT_SEED).unwrap();
            let state = Arc::new(ServerState::new("wine", trained.model, Duration::ZERO));
            let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (http, grpc) = (
                http_listener.local_addr().unwrap(),
                grpc_listener.local_addr().unwrap(),
            );
            let (http_stop, http_stopped) = oneshot::channel();
            let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
            tokio::spawn(serve(http_listener, Arc::clone(&state), async {
                let _ = http_stopped.await;
            }));
            let grpc_connections = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&grpc_connections);
            let incoming = TcpListenerStream::new(grpc_listener).map(move |conn| {
                counter.fetch_add(1, Ordering::Relaxed);
                conn
            });
            let service = InferenceService::new(state, outputs).into_server();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = grpc_stopped.await;
                    }),
            );
            Servers {
                http,
                grpc,
                grpc_connections,
                held_out_accuracy: trained.report.held_out_accuracy,
                stop: vec![http_stop, grpc_stop],
            }
        }

        async fn client(&self) -> GrpcInferenceServiceClient<Channel> {
            GrpcInferenceServiceClient::connect(format!("http://{}", self.grpc))
                .await
                .unwrap()
        }

        fn stop(self) {
            for stop in self.stop {
                let _ = stop.send(());
            }
        }
    }

    fn held_out() -> (WineData, Split) {
        let data = WineData::load();
        let split = Split::stratified(data.labels.view(), DEFAULT_SEED);
        (data, split)
    }

    /// The HTTP API's answer to `rows`: (probabilities, labels).
    fn http_answer(addr: SocketAddr, rows: &[&[f64]]) -> (Vec<f64>, Vec<i64>) {
        let body = serde_json::to_vec(&request_body("h", rows)).unwrap();
        let (status, text) = http::post(addr, "/v2/models/wine/infer", "application/json", &body)
            .expect("HTTP answer");
        assert_eq!(status, 200, "{text}");
        let r: InferenceResponse = serde_json::from_str(&text).unwrap();
        let (Some(TensorData::Fp64(p)), Some(TensorData::Int64(l))) = (
            r.output(OUTPUT_PROBABILITIES).map(|o| o.data.clone()),
            r.output(OUTPUT_LABEL).map(|o| o.data.clone()),
        ) else {
            panic!("unexpected HTTP answer {text}")
        };
        (p, l)
    }

    fn grpc_tensors(r: &ModelInferResponse) -> (Vec<f64>, Vec<i64>) {
        match (
            output_tensor(r, OUTPUT_PROBABILITIES),
            output_tensor(r, OUTPUT_LABEL),
        ) {
            (Ok(Tensor::Fp64(p)), Ok(Tensor::Int64(l))) => (p, l),
            other => panic!("unexpected gRPC answer {other:?}: {r:?}"),
        }
    }

    #[tokio::test]
    async fn grpc_answers_the_same_class_as_http_for_the_same_rows() {
        let srv = Servers::start(OutputEncoding::Contents).await;
        let mut client = srv.client().await;
        let (data, split) = held_out();
        for (n, &row) in split.held_out.iter().take(60).enumerate() {
            let features = data.row(row).to_vec();
            let (http_p, http_l) = tokio::task::spawn_blocking({
                let (addr, f) = (srv.http, features.clone());
                move || http_answer(addr, &[&f])
            })
            .await
            .unwrap();
            let id = format!("g-{n}");
            let r = client
                .model_infer(infer_request("wine", &id, &features, N_FEATURES))
                .await
                .expect("ModelInfer answers")
                .into_inner();
            assert_eq!(
                (r.model_name.as_str(), r.model_version.as_str()),
                ("wine", "v2")
            );
            assert_eq!(r.id, id);
            assert!(r.raw_output_contents.is_empty());
            let (p, l) = grpc_tensors(&r);
            assert_eq!(l, http_l, "row {row}");
            // serde_json parses floats to within one ulp, not always exactly.
            assert_eq!(p.len(), http_p.len());
            for (a, b) in p.iter().zip(&http_p) {
                assert!(
                    (a - b).abs() <= 1e-15 * a.abs().max(1e-300),
                    "row {row}: {p:?} {http_p:?}"
                );
            }
            let probs = &r.outputs[0];
            assert_eq!(
                (probs.datatype.as_str(), probs.shape.as_slice()),
                ("FP64", &[1, 6][..])
            );
        }
        // A batch of three rows, and the metadata and health calls.
        let rows: Vec<f64> = split.held_out[..3]
            .iter()
            .flat_map(|&r| data.row(r).to_vec())
            .collect();
        let r = client
            .model_infer(infer_request("wine", "batch", &rows, N_FEATURES))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grpc_tensors(&r).1.len(), 3);
        let meta = client
            .model_metadata(pb::ModelMetadataRequest {
                name: "wine".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(meta.versions, ["v2"]);
        assert_eq!(meta.outputs.len(), 2);
        let live = client.server_live(pb::ServerLiveRequest {}).await.unwrap();
        assert!(live.into_inner().live);
        let ready = client
            .model_ready(pb::ModelReadyRequest {
                name: "wine".into(),
                version: "v2".into(),
            })
            .await
            .unwrap();
        assert!(ready.into_inner().ready);
        srv.stop();
    }

    #[tokio::test]
    async fn raw_outputs_decode_to_the_typed_contents() {
        let raw_srv = Servers::start(OutputEncoding::Raw).await;
        let typed_srv = Servers::start(OutputEncoding::Contents).await;
        let (mut raw, mut typed) = (raw_srv.client().await, typed_srv.client().await);
        let (data, split) = held_out();
        let rows: Vec<f64> = split.held_out[..4]
            .iter()
            .flat_map(|&r| data.row(r).to_vec())
            .collect();
        let request = infer_request("wine", "r", &rows, N_FEATURES);
        let a = raw.model_infer(request.clone()).await.unwrap().into_inner();
        let b = typed
            .model_infer(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.raw_output_contents.len(), 2);
        assert!(a.outputs.iter().all(|o| o.contents.is_none()));
        assert_eq!(a.raw_output_contents[0].len(), 4 * 6 * 8);
        assert_eq!(a.raw_output_contents[1].len(), 4 * 8);
        assert_eq!(grpc_tensors(&a), grpc_tensors(&b));

        // The request parameter asks a typed server for raw outputs; only the label here.
        let mut asks_raw = request;
        asks_raw.parameters.insert(
            RAW_OUTPUT_PARAMETER.into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(true)),
            },
        );
        asks_raw.outputs = vec![pb::model_infer_request::InferRequestedOutputTensor {
            name: OUTPUT_LABEL.into(),
            ..Default::default()
        }];
        let c = typed.model_infer(asks_raw).await.unwrap().into_inner();
        assert_eq!(c.outputs.len(), 1);
        assert_eq!(c.raw_output_contents.len(), 1);
        assert_eq!(
            output_tensor(&c, OUTPUT_LABEL),
            Ok(Tensor::Int64(grpc_tensors(&b).1))
        );
        // A truncated raw output is an error, not a guess.
        let mut cut = a.clone();
        cut.raw_output_contents[1].pop();
        assert!(output_tensor(&cut, OUTPUT_LABEL).is_err());
        raw_srv.stop();
        typed_srv.stop();
    }

    #[tokio::test]
    async fn raw_inputs_and_bad_requests() {
        let srv = Servers::start(OutputEncoding::Contents).await;
        let mut client = srv.client().await;
        let (data, split) = held_out();
        let row = data.row(split.held_out[0]).to_vec();
        let typed = client
            .model_infer(infer_request("wine", "t", &row, N_FEATURES))
            .await
            .unwrap()
            .into_inner();
        // The same row as raw FP32 bytes: same class.
        let mut raw = infer_request("wine", "raw", &row, N_FEATURES);
        raw.inputs[0].contents = None;
        raw.inputs[0].datatype = "FP32".into();
        raw.raw_input_contents = vec![row.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()];
        let r = client.model_infer(raw.clone()).await.unwrap().into_inner();
        assert_eq!(grpc_tensors(&r).1, grpc_tensors(&typed).1);

        let good = infer_request("wine", "bad", &row, N_FEATURES);
        let mut cases: Vec<(ModelInferRequest, tonic::Code)> = Vec::new();
        let mut other_model = good.clone();
        other_model.model_name = "other".into();
        cases.push((other_model, tonic::Code::NotFound));
        let mut other_version = good.clone();
        other_version.model_version = "v1".into();
        cases.push((other_version, tonic::Code::NotFound));
        let mut short = good.clone();
        short.inputs[0].shape = vec![1, 10];
        cases.push((short, tonic::Code::InvalidArgument));
        let mut missing = good.clone();
        missing.inputs[0].shape = vec![2, 11];
        cases.push((missing, tonic::Code::InvalidArgument));
        let mut bytes = good.clone();
        bytes.inputs[0].datatype = "BYTES".into();
        cases.push((bytes, tonic::Code::InvalidArgument));
        let mut both = raw.clone();
        both.inputs[0].contents = good.inputs[0].contents.clone();
        cases.push((both, tonic::Code::InvalidArgument));
        let mut odd_raw = raw;
        odd_raw.raw_input_contents[0].pop();
        cases.push((odd_raw, tonic::Code::InvalidArgument));
        let mut unknown_output = good.clone();
        unknown_output.outputs = vec![pb::model_infer_request::InferRequestedOutputTensor {
            name: "nope".into(),
            ..Default::default()
        }];
        cases.push((unknown_output, tonic::Code::InvalidArgument));
        let mut no_input = good;
        no_input.inputs.clear();
        cases.push((no_input, tonic::Code::InvalidArgument));
        for (request, code) in cases {
            let status = client
                .model_infer(request.clone())
                .await
                .expect_err("an error status");
            assert_eq!(status.code(), code, "{request:?}: {status:?}");
            assert!(!status.message().is_empty());
        }
        srv.stop();
    }

    fn grpc_traffic(target: SocketAddr, model: &str) -> TrafficConfig {
        TrafficConfig {
            target,
            model: model.into(),
            clients: 4,
            request_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(60),
            rate: None,
            chunked_every: 0,
            protocol: Protocol::Grpc,
            gzip: false,
            progress: false,
        }
    }

    #[tokio::test]
    async fn grpc_traffic_driver_uses_one_connection_and_measures_the_model() {
        let srv = Servers::start(OutputEncoding::Raw).await;
        let (data, split) = held_out();
        let jobs = Arc::new(plan_jobs(&data, &split, None, 1));
        let summary = run(&grpc_traffic(srv.grpc, "wine"), Arc::clone(&jobs)).await;
        assert!(summary.all_ok(), "{summary:?}");
        assert_eq!(summary.responses.get(&0), Some(&split.held_out.len()));
        assert_eq!(summary.rows_scored, split.held_out.len());
        assert_eq!(summary.accuracy, Some(srv.held_out_accuracy));
        assert_eq!(srv.grpc_connections.load(Ordering::Relaxed), 1);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["protocol"], "grpc");

        // Gzip both ways, batches of 7 rows.
        let gzip = TrafficConfig {
            gzip: true,
            ..grpc_traffic(srv.grpc, "wine")
        };
        let summary = run(&gzip, Arc::new(plan_jobs(&data, &split, Some(70), 7))).await;
        assert!(summary.all_ok(), "{summary:?}");
        assert_eq!(summary.rows_scored, 70);

        // Unknown model: every call answers NOT_FOUND (5), none scored.
        let summary = run(
            &grpc_traffic(srv.grpc, "nope"),
            Arc::new(plan_jobs(&data, &split, Some(5), 1)),
        )
        .await;
        assert_eq!(
            summary.responses.get(&(tonic::Code::NotFound as u16)),
            Some(&5)
        );
        assert_eq!((summary.rows_scored, summary.bad_responses), (0, 0));
        assert!(!summary.all_ok());
        srv.stop();
    }

    #[tokio::test]
    async fn unreachable_grpc_target_is_bounded_and_counted() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (data, split) = held_out();
        let cfg = TrafficConfig {
            request_timeout: Duration::from_secs(2),
            ..grpc_traffic(addr, "wine")
        };
        let summary = run(&cfg, Arc::new(plan_jobs(&data, &split, None, 1))).await;
        assert!(summary.responses.is_empty(), "{summary:?}");
        assert!(summary.transport_errors <= 4 * 5, "{summary:?}");
        assert!(summary.transport_errors > 0);
        assert!(!summary.error_samples.is_empty());
    }
}
