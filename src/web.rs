//! The web faces of oneclick (issue 15): the original HTTP web services
//! (`POST /pay/oneclick/v1/token.cfm`, `…/rem_token.cfm`, `/pay/tokenpay.cfm`) on their own
//! HTTPS listener inside `oneclick serve` (`[web]` settings; docs/http.md), the merchant's
//! personal account ([`account`]), and the demonstration payment page ([`demo`]), which is a
//! process of its own (`oneclick demo-page`) talking to oneclick over NATS as a gateway.
//!
//! **In-process, not a separate process over NATS** (docs/http.md, "Why in-process"): the
//! lockout of a merchant login counts failures per *source*, and over HTTP the source is the
//! client's address — only the process that accepts the TCP connection knows it; a web process
//! in front of NATS would make every client one source (its own NATS identity), so one attacker
//! could lock every merchant's login for everyone. In-process also saves a hop and a second
//! set of NATS credentials to deploy.
//!
//! **No business rule lives here.** A request is parsed and answered by the very function the
//! NATS merchant surface calls ([`crate::surfaces::merchant::handle`]): the same body types,
//! credential check, lockout, tenant isolation, engine command and fault table. This layer adds
//! only the transport: TLS ([`listener`]), limits (connections, header and body deadlines, body
//! size), the request id and the access log ([`services`]).
//!
//! Invariants:
//! - HTTPS only: the listener speaks TLS and nothing else; a plaintext request is a failed
//!   handshake and gets no HTTP answer;
//! - no request body (passwords, Token Pay orders) and no header value is ever logged; a log
//!   line names the request id, route, merchant id, status, outcome and time only;
//! - the login source is the TCP peer's address; `X-Forwarded-For` is read only from a peer
//!   listed in `web.trusted_proxies`.

pub mod account;
pub mod demo;
pub mod listener;
pub mod pages;
pub mod services;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::surfaces::Context;

/// Starts the HTTPS web services when `web.listen` is set; returns the bound address (`None`
/// when disabled). Connections run in `ctx.tracker` and close gracefully when `stop` fires.
pub async fn spawn(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let web = &ctx.settings.web;
    if web.listen.is_empty() {
        return Ok(None);
    }
    let tls = listener::tls_config(web)?;
    let mut router = services::router(ctx.clone());
    if web.account {
        router = router.merge(account::router(ctx.clone())?);
    }
    let addr = listener::serve(ctx.clone(), tls, router, stop).await?;
    tracing::info!(%addr, "web services listening (HTTPS)");
    Ok(Some(addr))
}
