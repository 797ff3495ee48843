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
//! - [`server`]: the hyper HTTP/1.1 keep-alive server (`demo-model`).
//! - [`traffic`]: the concurrent keep-alive client driving held-out rows (`demo-traffic`).
//! - [`eval`]: accuracy, agreement, percentiles.

pub mod dataset;
pub mod eval;
pub mod model;
pub mod oip;
pub mod server;
pub mod traffic;
pub mod training;

pub use dataset::{DEFAULT_SEED, Split, WineData};
pub use model::{Model, ModelKind};
pub use training::{TrainReport, Trained, train_demo_model};
