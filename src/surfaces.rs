//! The NATS surfaces: request-reply endpoints for gateways and merchants (NATS micro-service
//! protocol, so `$SRV.PING/INFO/STATS` describe them; every endpoint in one queue group so
//! replicas share the work) and the durable JetStream command consumers.
//!
//! Every request is answered, malformed ones included, within `service.request_timeout_ms`:
//! the handler runs under a deadline and a fault reply is sent when it passes. A timed-out
//! payment still completes inside its customer's actor and its result is stored; a repeat of the
//! order returns it (R16). Request bodies and serde error texts are never logged (they may carry
//! card data); logs name the endpoint, merchant and outcome only.

pub mod durable;
pub mod gateway;
pub mod merchant;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_nats::service::{Service, ServiceExt};
use futures::StreamExt;
use oneclick_actors::fault::{Fault, Language};
use oneclick_actors::Engine;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::subjects::Subjects;
use crate::wire::{sniff_language, FaultReply};

/// Shared by every handler.
pub struct Context {
    pub engine: Engine,
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// In-flight requests and commands, awaited on shutdown.
    pub tracker: TaskTracker,
    /// Cancelled when shutdown starts.
    pub stop: CancellationToken,
}

/// What a handler produces: reply bytes, or a fault (rendered in the request's language).
pub type Reply = Result<Vec<u8>, Fault>;

/// Starts the service, its endpoints and the durable consumers.
pub async fn start(ctx: Arc<Context>) -> anyhow::Result<Service> {
    let service = ctx
        .client
        .service_builder()
        .description("oneclick: One Click card-on-file payments (gateway and merchant services)")
        .queue_group(ctx.settings.nats.queue_group.clone())
        .start("oneclick", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the NATS service: {e}"))?;
    gateway::register(&service, ctx.clone()).await?;
    merchant::register(&service, ctx.clone()).await?;
    add_endpoint(
        &service,
        ctx.clone(),
        "health",
        ctx.subjects.health(),
        |ctx, _| async move { health_reply(&ctx).await },
    )
    .await?;
    durable::start(ctx.clone()).await?;
    Ok(service)
}

/// The health reply: `{"status":"ok","active_customers":N}` when the vault answers.
pub async fn health_reply(ctx: &Context) -> Reply {
    let vault_ok = ctx
        .engine
        .vault()
        .send(oneclick_actors::vault::keys::GetKeyStatus)
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let body = serde_json::json!({
        "status": if vault_ok { "ok" } else { "degraded" },
        "vault": vault_ok,
        "nats": matches!(ctx.client.connection_state(), async_nats::connection::State::Connected),
        "active_customers": ctx.engine.active_customers(),
    });
    serde_json::to_vec(&body).map_err(|_| Fault::Internal)
}

/// A handler's work once started (boxed, so it can be polled here and finished in a task).
type Pending = std::pin::Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Counts the request and sends its reply (a fault in the request's language).
async fn respond(
    ctx: &Context,
    name: &'static str,
    request: async_nats::service::Request,
    reply: Reply,
    started: Instant,
) {
    let outcome = match &reply {
        Ok(_) => "ok",
        Err(f) => f.name(),
    };
    ctx.metrics
        .observe_request(name, outcome, started.elapsed());
    let bytes =
        reply.unwrap_or_else(|fault| fault_bytes(fault, sniff_language(&request.message.payload)));
    if let Err(e) = request.respond(Ok(bytes.into())).await {
        tracing::warn!(endpoint = name, error = %e, "could not send the reply");
    }
}

/// Adds one endpoint named `name` on `subject` and serves it: a request answered at once
/// (from memory) by the endpoint's loop, any other in its own task; all tracked for shutdown,
/// under the request deadline, always answered.
pub async fn add_endpoint<F, Fut>(
    service: &Service,
    ctx: Arc<Context>,
    name: &'static str,
    subject: String,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Arc<Context>, async_nats::Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let mut endpoint = service
        .endpoint_builder()
        .name(name)
        .add(subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint {name} on {subject}: {e}"))?;
    let deadline = Duration::from_millis(ctx.settings.service.request_timeout_ms);
    let tracker = ctx.tracker.clone();
    let stop = ctx.stop.clone();
    // The loop is tracked too: a request it answers itself is in flight until its reply is sent.
    ctx.tracker.clone().spawn(async move {
        loop {
            let request = tokio::select! {
                _ = stop.cancelled() => break,
                r = endpoint.next() => match r { Some(r) => r, None => break },
            };
            let started = Instant::now();
            let mut work: Pending = Box::pin(handler(ctx.clone(), request.message.clone()));
            // A request answered from memory (an offer or token list of a cached customer) is
            // done at its first poll: answer it here, without a task of its own (spawning one
            // costs more than the answer). Anything that waits is moved to its own task, with
            // its deadline; its next poll there registers the task's waker.
            let first = work.as_mut().poll(&mut std::task::Context::from_waker(
                futures::task::noop_waker_ref(),
            ));
            if let Poll::Ready(reply) = first {
                respond(&ctx, name, request, reply, started).await;
                continue;
            }
            let ctx = ctx.clone();
            tracker.spawn(async move {
                let reply = match tokio::time::timeout_at((started + deadline).into(), work).await {
                    Ok(reply) => reply,
                    Err(_) => Err(Fault::Timeout),
                };
                respond(&ctx, name, request, reply, started).await;
            });
        }
        let _ = endpoint.stop().await;
    });
    Ok(())
}

pub fn fault_bytes(fault: Fault, language: Language) -> Vec<u8> {
    FaultReply::new(fault, language).to_bytes()
}

/// Logs a failure's cause (never card data: engine errors carry none) and returns its fault.
pub fn to_fault(endpoint: &str, merchant_id: i64, e: oneclick_actors::EngineError) -> Fault {
    let fault = e.fault();
    match fault {
        Fault::Internal | Fault::Unavailable => {
            tracing::error!(endpoint, merchant_id, error = %e, "request failed")
        }
        _ => tracing::debug!(
            endpoint,
            merchant_id,
            fault = fault.name(),
            "request refused"
        ),
    }
    fault
}
