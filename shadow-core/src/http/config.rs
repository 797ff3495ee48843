//! How much the HTTP parser keeps: the size limits of heads and bodies.

/// Limits of the HTTP parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest decoded body kept (request or response); bigger exchanges are
    /// [`Outcome::Truncated`](super::Outcome::Truncated) and never replayed.
    pub max_body: usize,
    /// Largest request or response head.
    pub max_head: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body: 16 << 20,
            max_head: 64 << 10,
        }
    }
}
