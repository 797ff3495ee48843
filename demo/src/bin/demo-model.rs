//! `demo-model`: trains one demo model at start and serves it over the Open Inference Protocol.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use shadowtap_demo::grpc::{InferenceService, OutputEncoding, serve_grpc};
use shadowtap_demo::server::{ServerState, serve};
use shadowtap_demo::{DEFAULT_SEED, ModelKind, train_demo_model};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Demo model server for shadowtap: trains a wine-quality classifier at start (red wine quality
/// data shipped in the linfa-datasets crate), then serves it over the Open Inference Protocol
/// (KServe v2) on HTTP/1.1 keep-alive.
///
/// v1 (production) is a multinomial logistic regression, v2 (shadow) a Gaussian naive Bayes:
/// they agree on most held-out wines, not all.
///
/// Routes: POST /v2/models/{name}/infer, GET /v2/models/{name}, GET /v2/health/ready,
/// GET /v2/health/live. With --grpc-listen it also serves the protocol's gRPC API
/// (inference.GRPCInferenceService: ServerLive, ServerReady, ModelReady, ServerMetadata,
/// ModelMetadata, ModelInfer) over h2c. Stops on SIGINT / SIGTERM.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLE)]
struct Cli {
    /// Which model to train and serve: v1 (production) or v2 (shadow).
    #[arg(long, value_parser = ["v1", "v2"])]
    model: String,

    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Also serve the Open Inference Protocol's gRPC API (h2c, prior knowledge) on this address
    /// (port 0 picks a free port; the chosen one is printed).
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,

    /// gRPC ModelInfer answers carry the output elements in raw_output_contents (little-endian
    /// bytes) instead of typed contents; a request can also ask for that with the parameter
    /// raw_output_contents = true.
    #[arg(long, requires = "grpc_listen")]
    grpc_raw_outputs: bool,

    /// Model name in the URL path; give v1 and v2 the same name so replayed requests match.
    #[arg(long, default_value = "wine-quality")]
    name: String,

    /// Seed of the train / held-out split (demo-traffic must use the same one).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Extra delay before each inference answer, in milliseconds (simulates a slower model).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,

    /// Also write the training measurements (accuracies, timing) as JSON to this file.
    #[arg(long)]
    report_out: Option<std::path::PathBuf>,

    /// Allow listening on an address outside 127.0.0.0/8 and ::1 (e.g. a test network namespace).
    #[arg(long)]
    allow_non_loopback: bool,
}

const EXAMPLE: &str = "Example:\n  demo-model --model v1 --listen 127.0.0.1:8080 --grpc-listen 127.0.0.1:8001\n  \
curl -s 127.0.0.1:8080/v2/models/wine-quality/infer -d '{\"inputs\":[{\"name\":\"input-0\",\
\"shape\":[1,11],\"datatype\":\"FP64\",\"data\":[7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4]}]}'";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-model: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    for addr in std::iter::once(cli.listen).chain(cli.grpc_listen) {
        if !addr.ip().is_loopback() && !cli.allow_non_loopback {
            bail!(
                "refusing to listen on {addr} (not loopback); pass --allow-non-loopback to override"
            );
        }
    }
    let kind: ModelKind = cli.model.parse().map_err(anyhow::Error::msg)?;
    let trained = train_demo_model(kind, cli.seed).context("training the model")?;
    let r = &trained.report;
    println!(
        "demo-model {kind}: {} trained on {} rows in {:.0} ms; accuracy train {:.3}, held-out {:.3} \
         ({} rows, majority baseline {:.3}, seed {})",
        r.algorithm,
        r.train_rows,
        r.elapsed.as_secs_f64() * 1e3,
        r.train_accuracy,
        r.held_out_accuracy,
        r.held_out_rows,
        r.majority_baseline,
        r.seed,
    );

    if let Some(path) = &cli.report_out {
        let json = serde_json::to_string_pretty(r)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        // gRPC binds first: once the HTTP health check answers, both are listening.
        let grpc_listener = match cli.grpc_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (gRPC)"))?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("binding {}", cli.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let state = Arc::new(ServerState::new(
            cli.name.clone(),
            trained.model,
            Duration::from_millis(cli.delay_ms),
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        let grpc_task = match grpc_listener {
            Some(grpc_listener) => {
                let grpc_addr = grpc_listener
                    .local_addr()
                    .context("reading the bound gRPC address")?;
                let outputs = if cli.grpc_raw_outputs {
                    OutputEncoding::Raw
                } else {
                    OutputEncoding::Contents
                };
                println!(
                    "demo-model {kind}: serving model {:?} over gRPC on {grpc_addr} \
                     (inference.GRPCInferenceService/ModelInfer, outputs in {})",
                    cli.name,
                    match outputs {
                        OutputEncoding::Raw => "raw_output_contents",
                        OutputEncoding::Contents => "contents",
                    }
                );
                let service = InferenceService::new(Arc::clone(&state), outputs);
                Some(tokio::spawn(serve_grpc(
                    grpc_listener,
                    service,
                    stopped(stop_rx.clone()),
                )))
            }
            None => None,
        };
        println!(
            "demo-model {kind}: serving model {:?} on http://{addr} (POST /v2/models/{}/infer)",
            cli.name, cli.name
        );
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        serve(listener, Arc::clone(&state), stopped(stop_rx)).await;
        if let Some(task) = grpc_task {
            task.await
                .context("the gRPC server task failed")?
                .context("serving gRPC")?;
        }
        println!(
            "demo-model {kind}: stopped after {} inference requests",
            state.served()
        );
        Ok(())
    })
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
