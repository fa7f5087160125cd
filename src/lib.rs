//! The oneclick service shell: configuration, NATS subjects and wire types, the NATS surfaces,
//! startup. The engine (rules, actors, vault) is the `oneclick-actors` crate.
//!
//! - [`config`]: settings from `config/*.toml` and `ONECLICK__*` env;
//! - [`subjects`], [`wire`]: the NATS contract (docs/protocol.md);
//! - [`surfaces`]: gateway and merchant request-reply services, the durable JetStream path;
//! - [`app`]: build and run with graceful shutdown; [`http`] + [`metrics`]: ops endpoints;
//! - [`acquirer_nats`]: the production acquirer connector; [`keys`]: master keys (wrapped by a
//!   key-encryption key); [`hardening`]: no core dumps;
//! - [`web`]: the original HTTP web services on their own HTTPS listener (docs/http.md);
//! - [`cli`]: `serve`, `admin`, `client`.

pub mod acquirer_nats;
pub mod app;
pub mod cli;
pub mod config;
pub mod hardening;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod subjects;
pub mod surfaces;
pub mod telemetry;
pub mod web;
pub mod wire;

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
