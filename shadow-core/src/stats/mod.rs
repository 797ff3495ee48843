//! Model-quality statistics: small, pure numeric routines that run per comparison in bounded
//! memory and are read out as snapshots.
//!
//! - [`proportion`]: Wilson score intervals for every proportion, Newcombe's hybrid score
//!   intervals for differences of proportions (independent and paired).
//! - [`mcnemar`]: McNemar's exact test on paired correctness.
//! - [`classification`]: a streaming, cardinality-capped confusion matrix with accuracy and
//!   per-class / macro precision, recall and F1.
//! - [`regression`]: streaming MAE, RMSE and mean signed delta.
//! - [`psi`]: population stability index between two score distributions.
//!
//! Nothing here panics on any input: empty or degenerate inputs give `None` (never a made-up 0).

pub mod classification;
pub mod mcnemar;
pub mod proportion;
pub mod psi;
pub mod regression;
