//! The gRPC side of the traffic driver: `ModelInfer` calls over one HTTP/2 connection (a tonic
//! `Channel`, HTTP/2 keep-alive pings), shared by every client, so `clients` calls are in
//! flight as concurrent streams of that connection. Each call carries the job's id as the
//! request `id` and as `x-request-id` metadata, and the per-request timeout as `grpc-timeout`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::{Answer, Job, Labels};
use crate::dataset::N_FEATURES;
use crate::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::grpc::{Tensor, infer_request, output_tensor};
use crate::oip::OUTPUT_LABEL;

/// Interval of HTTP/2 keep-alive pings on the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// One client's handle on the shared connection.
#[derive(Clone)]
pub(super) struct GrpcClient {
    client: GrpcInferenceServiceClient<Channel>,
    model: String,
    timeout: Duration,
}

impl GrpcClient {
    /// Opens the connection to `target` (h2c, prior knowledge). When it cannot be opened now,
    /// the channel connects on first use and each call reports the error.
    pub(super) async fn connect(
        target: SocketAddr,
        model: String,
        timeout: Duration,
        gzip: bool,
    ) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| format!("gRPC endpoint for {target}: {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_while_idle(true);
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(_) => endpoint.connect_lazy(),
        };
        let mut client = GrpcInferenceServiceClient::new(channel);
        if gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(Self {
            client,
            model,
            timeout,
        })
    }

    /// One `ModelInfer` call; `Err` when no gRPC answer came (transport failure).
    pub(super) async fn exchange(&mut self, job: &Job) -> Result<Answer, String> {
        let mut request = tonic::Request::new(infer_request(
            &self.model,
            &job.id,
            &job.features,
            N_FEATURES,
        ));
        let id = MetadataValue::try_from(job.id.as_str())
            .map_err(|e| format!("request id {:?} as metadata: {e}", job.id))?;
        request.metadata_mut().insert("x-request-id", id);
        request.set_timeout(self.timeout);
        let sent_at = Instant::now();
        let result = self.client.model_infer(request).await;
        let latency = sent_at.elapsed();
        match result {
            Ok(response) => {
                let response = response.into_inner();
                let labels = match output_tensor(&response, OUTPUT_LABEL) {
                    Ok(Tensor::Int64(labels)) => Ok(Labels {
                        version: Some(response.model_version),
                        labels,
                    }),
                    Ok(Tensor::Fp64(_)) => Err(format!("output {OUTPUT_LABEL:?} is not INT64")),
                    Err(e) => Err(e),
                };
                Ok(Answer {
                    status: tonic::Code::Ok as u16,
                    latency,
                    labels,
                })
            }
            // A status tonic made up from a transport error carries it as its source; one the
            // server sent does not.
            Err(status) if std::error::Error::source(&status).is_some() => {
                Err(format!("gRPC transport: {status}"))
            }
            Err(status) => Ok(Answer {
                status: status.code() as u16,
                latency,
                labels: Err(format!(
                    "gRPC status {:?}: {}",
                    status.code(),
                    status.message()
                )),
            }),
        }
    }
}
