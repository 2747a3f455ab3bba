//! A MESH signal server: swarm membership and message relay over WebSocket, wire-compatible with
//! DXOS 0.8.3 clients (`@dxos/messaging`).
//!
//! Clients connect to `ws://HOST:PORT/.well-known/dx/signal` and speak `dxos.rpc` over binary
//! WebSocket messages: `Join` a topic (a stream of PeerAvailable / PeerLeft events), open their
//! inbox with `ReceiveMessages`, and `SendMessage` to a peer's inbox. A plain GET on the same path
//! answers 200 (readiness) and `/metrics` serves Prometheus metrics.
//!
//! Beyond DXOS, a session may prove it holds a peer key (`mesh.v1.SignalAuth`), and
//! [`AuthPolicy`] decides what unproven sessions may do; [`Config::public_url`] binds the proofs
//! to this server. [`Limits`] bounds what any client can make the server hold or do.
//!
//! ```no_run
//! use std::time::Duration;
//! use mesh_signal_server::{Config, Server};
//!
//! # async fn run() -> Result<(), mesh_signal_server::StartError> {
//! let server = Server::start(Config::default().with_listen("127.0.0.1:1337".parse().unwrap())).await?;
//! println!("serving {}", server.url());
//! tokio::signal::ctrl_c().await.ok();
//! server.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod config;
mod connection;
mod federation;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod limiter;
mod mailbox;
mod metrics;
mod server;
mod session;
mod tls;

pub use config::{AuthPolicy, Config, IntroductionView, Limits, RateLimit, TlsFiles};
pub use federation::Federation;
pub use http::{METRICS_PATH, SIGNAL_PATH};
pub use metrics::Stats;
pub use server::{Server, StartError};
