//! Shared helpers for the benchmark targets in `benches/benches/`.

pub mod bare_relay;
pub mod nats_process;
pub mod proc_stats;
pub mod server_process;
pub mod signal_codec;
pub mod signal_load;
pub mod signal_wire;
