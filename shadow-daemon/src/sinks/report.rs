//! Verdict and report rendering.
