//! shadowtap demo: two real model servers (v1 production, v2 shadow) and a traffic driver.
//!
//! # Layout
//! One request, from data to answer:
//! - [`dataset`]: the red wine quality data (shipped in `linfa-datasets`) and its deterministic,
//!   stratified train / held-out split.
//! - [`model`]: v1 = multinomial logistic regression, v2 = Gaussian naive Bayes; both answer class
//!   probabilities over the same class list.
//! - [`training`]: load, split, train and measure at start-up.
//! - [`oip`]: Open Inference Protocol (KServe v2) JSON types and input validation.
//! - [`server`]: the hyper HTTP/1.1 keep-alive server (`demo-model`) and the state both servers
//!   answer from.
//! - [`grpc`]: the same models over the Open Inference Protocol's gRPC API (tonic, h2c;
//!   `demo-model --grpc-listen`), and the tensor helpers of its clients.
//! - [`traffic`]: the traffic driver (`demo-traffic`): held-out rows from concurrent keep-alive
//!   HTTP/1.1 clients, or as concurrent gRPC calls on one HTTP/2 connection (`--grpc`).
//! - [`eval`]: accuracy, agreement, percentiles.

pub mod dataset;
pub mod eval;
pub mod grpc;
pub mod model;
pub mod oip;
pub mod server;
pub mod traffic;
pub mod training;

pub use dataset::{DEFAULT_SEED, Split, WineData};
pub use model::{Model, ModelKind};
pub use training::{TrainReport, Trained, train_demo_model};
