//! Shared helpers for the benchmark targets in `benches/benches/`.
