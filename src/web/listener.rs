//! The HTTPS listener of the web faces: rustls, a bound on connections, deadlines.
//!
//! - TLS 1.2/1.3 (rustls' safe defaults, ring provider), ALPN `http/1.1`; the certificate and
//!   key are PEM files (`web.tls_cert_file`, `web.tls_key_file`; `scripts/make-certs` writes a
//!   pair). Nothing is served in plaintext.
//! - At most `web.max_connections` connections at once; one over is closed at accept (a
//!   semaphore permit lives as long as its connection).
//! - The TLS handshake must finish within `web.header_timeout_ms`, and every request head
//!   within the same time (hyper's header-read timeout), so a client that sends slowly holds a
//!   connection for a bounded time; the body deadline is the handler's ([`super::services`]).
//! - Each connection runs in the service's task tracker; on shutdown it is closed gracefully
//!   (the request in flight is answered, then the connection closes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::WebSettings;
use crate::surfaces::Context;

/// The TCP peer of a connection, as handlers see it (an extension of every request).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Largest read buffer of a connection: bounds a request head (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The rustls server configuration from the PEM files of `[web]`.
pub fn tls_config(web: &WebSettings) -> anyhow::Result<Arc<ServerConfig>> {
    tls_from_files(
        "web",
        web.tls_cert_file.as_deref(),
        web.tls_key_file.as_deref(),
    )
}

/// The rustls server configuration from the PEM files `<section>.tls_cert_file` and
/// `<section>.tls_key_file` (both required).
pub fn tls_from_files(
    section: &str,
    cert_file: Option<&std::path::Path>,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_file = cert_file
        .with_context(|| format!("{section}.tls_cert_file is required with {section}.listen"))?;
    let key_file = key_file
        .with_context(|| format!("{section}.tls_key_file is required with {section}.listen"))?;
    let cert_pem = std::fs::read(cert_file)
        .with_context(|| format!("{section}.tls_cert_file: reading {}", cert_file.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow::anyhow!("{section}.tls_cert_file: not a PEM certificate chain"))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{section}.tls_cert_file: no certificate in {}",
            cert_file.display()
        );
    }
    let key_pem = zeroize::Zeroizing::new(
        std::fs::read(key_file)
            .with_context(|| format!("{section}.tls_key_file: reading {}", key_file.display()))?,
    );
    // The parse error is not printed: it could quote key material.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| anyhow::anyhow!("{section}.tls_key_file: not a PEM private key"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("{section}.tls_cert_file and {section}.tls_key_file do not form a usable pair")
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds `web.listen` and serves `router` over TLS until `stop`; returns the bound address.
pub async fn serve(
    ctx: Arc<Context>,
    tls: Arc<ServerConfig>,
    router: Router,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let web = &ctx.settings.web;
    let metrics = ctx.metrics.clone();
    let bounds = Bounds {
        setting: "web.listen",
        listen: web.listen.clone(),
        max_connections: web.max_connections,
        head_deadline: Duration::from_millis(web.header_timeout_ms),
    };
    serve_with(bounds, ctx.tracker.clone(), tls, router, stop, move || {
        metrics.observe_request("http_connection", "refused_full", Duration::ZERO)
    })
    .await
}

/// Where a listener binds and its bounds (the web services' `[web]`, the demo page's `[demo]`).
#[derive(Debug, Clone)]
pub struct Bounds {
    /// The setting `listen` comes from, for the error message.
    pub setting: &'static str,
    pub listen: String,
    pub max_connections: usize,
    /// The TLS handshake, then each request head, must arrive within this long.
    pub head_deadline: Duration,
}

/// Binds `bounds.listen` and serves `router` over TLS until `stop`, each connection a task of
/// `tracker`; `refused` is called for a connection closed at accept because all slots are taken.
pub async fn serve_with(
    bounds: Bounds,
    tracker: tokio_util::task::TaskTracker,
    tls: Arc<ServerConfig>,
    router: Router,
    stop: CancellationToken,
    refused: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(&bounds.listen)
        .await
        .map_err(|e| anyhow::anyhow!("{} {}: {e}", bounds.setting, bounds.listen))?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let head_deadline = bounds.head_deadline;
    tracker.clone().spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "web: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                refused();
                drop(tcp);
                continue;
            };
            let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
            tracker.spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(head_deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    // A plaintext request, a scanner, a client that never finishes: closed.
                    Ok(Err(_)) | Err(_) => return,
                };
                let service = TowerToHyperService::new(router.layer(Extension(Peer(peer))));
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(head_deadline)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(tls), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
    });
    Ok(addr)
}
