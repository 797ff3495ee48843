//! TCP reassembly: per connection and direction, ordered byte streams from [`crate::capture::Segment`]s.
//! Pure and synchronous (no I/O), so it can be fuzzed.
