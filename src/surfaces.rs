//! The NATS surfaces: request-reply endpoints for gateways and merchants, the health subject,
//! `$SRV` discovery, and the durable JetStream command consumers.
//!
//! Every request is answered, malformed ones included, within `service.request_timeout_ms`:
//! the handler runs under a deadline and a fault reply is sent when it passes. A timed-out
//! payment still completes inside its customer's actor and its result is stored; a repeat of the
//! order returns it (R16). Request bodies and serde error texts are never logged (they may carry
//! card data); logs name the endpoint, merchant and outcome only.
//!
//! **Replies go only to the caller's own inbox** (issue 12, the confused deputy): before any work,
//! a request's reply subject is checked against the caller its subject names
//! ([`reply_guard`]); a request that fails is dropped unanswered, counted
//! (`oneclick_replies_refused_total`) and logged as a warning with endpoint and merchant id,
//! never the payload. [`respond`] is the only function that publishes a reply.
//!
//! **Why our own queue subscriptions and not the async-nats service API** (decided for issue 12
//! and issue 16 item 4): the service API answers `$SRV.PING/INFO/STATS` itself to any reply
//! subject (the same deputy, outside our check), hands the reply subject to `Request::respond`
//! with no hook to check it, and its `Endpoint::stop()` unsubscribes without a fenced drain, so
//! requests already routed to a stopping replica are lost. Each endpoint is therefore a plain
//! `queue_subscribe` on the same subject in the same queue group (`nats.queue_group`), served by
//! one loop.
//!
//! **Stopping without losing a request** (issue 16 item 4, docs/reliability.md finding 7): a
//! plain unsubscribe — and `Subscriber::drain` too, in async-nats 0.51/0.52: it sends UNSUB and a
//! PING but forgets the subscription at the connection's next poll, not at the PONG — drops the
//! requests the server routed to this replica before it processed the UNSUB and that arrive
//! after the client forgot the subscription. The fence used instead is the protocol's own
//! counted unsubscribe: `UNSUB <sid> <max>` (`Subscriber::unsubscribe_after`). With `max` above
//! what the server has delivered so far, the server keeps routing to this replica until it has
//! delivered exactly `max` messages on the subscription, then removes it (a later request goes
//! to another replica), and the client keeps the subscription until it has received exactly
//! `max`: both sides stop at the same message, so nothing routed here is dropped. `max` = the
//! requests received so far, counting those already waiting in the client's buffer (taken out
//! first: the library compares `max` with its own delivered count, buffer included; without
//! this a backlog larger than the tail made it drop the rest — tests/drain_fence.rs) + a tail of
//! as many as arrived in the last `service.drain_tail_ms` (at least 2): exact as long as fewer
//! than that are on the wire to this replica when the server reads the UNSUB (they arrive
//! within milliseconds unless the replica lags; the tail is
//! half a second of traffic by default). An endpoint that received nothing in the last
//! `drain_tail_ms` (idle), or whose tail does not arrive within `service.drain_window_ms`, stops
//! with `Subscriber::drain` instead: only a request on the wire during the fraction of a
//! millisecond the server takes to read the UNSUB can then be lost, and at such a rate there is
//! rarely one. Each endpoint logs how it stopped (`endpoint stopped`, `how` = `fenced` or
//! `drained` with `why` = `idle` / `window` / `no fence`).
//! `$SRV.PING` and `$SRV.INFO` (all instances, by name, by id) are re-implemented in
//! [`discovery`] through the same check; `$SRV.STATS` is not served: `/metrics` has the figures.

pub mod discovery;
pub mod durable;
pub mod gateway;
pub mod merchant;
pub mod reply_guard;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_nats::Subject;
use futures::StreamExt;
use oneclick_actors::fault::{Fault, Language};
use oneclick_actors::Engine;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::subjects::Subjects;
use crate::wire::{sniff_language, FaultReply};
use reply_guard::{Caller, ReplyRules};

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

/// One endpoint as `$SRV.INFO` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub name: &'static str,
    pub subject: String,
}

/// Starts the endpoints, discovery and the durable consumers. Everything runs in tasks of
/// `ctx.tracker` and stops (draining) when `ctx.stop` is cancelled.
pub async fn start(ctx: Arc<Context>) -> anyhow::Result<()> {
    // Streams (created, or their flags brought up to date) and their consumers first: a service
    // that answers health has its streams in their shipped shape.
    durable::start(ctx.clone()).await?;
    let mut endpoints = gateway::register(ctx.clone()).await?;
    endpoints.extend(merchant::register(ctx.clone()).await?);
    endpoints.push(
        add_endpoint(
            ctx.clone(),
            "health",
            ctx.subjects.health(),
            |_, _| Some(Caller::Anyone),
            |ctx, _| async move { health_reply(&ctx).await },
        )
        .await?,
    );
    discovery::start(ctx.clone(), endpoints).await?;
    Ok(())
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

/// Names the caller of a request from its subject; `None` when the subject names no valid
/// caller (such a request is dropped like one with a foreign reply subject).
pub type CallerOf = fn(&Subjects, &str) -> Option<Caller>;

/// After a drain was requested, how long to wait for the server's fence before giving up (a
/// broken connection never sends it).
const DRAIN_FENCE: Duration = Duration::from_secs(5);

/// The smallest tail of a stopping endpoint (see the module header).
const MIN_TAIL: u64 = 2;

/// How a serving loop stands with its subscription.
#[derive(Clone, Copy)]
enum Phase {
    Serving,
    /// `UNSUB <sid> <max>` sent: serving the tail until the subscription ends at `max`.
    Tail {
        max: u64,
        until: tokio::time::Instant,
    },
    /// Stopping with `Subscriber::drain`: `why` is logged (`idle`: nothing arrived in the last
    /// `drain_tail_ms`; `window`: the tail did not arrive in time; `no fence`: drain_tail_ms = 0).
    Draining {
        why: &'static str,
    },
}

/// Ends `subscriber` exactly (see the module header): first takes what already waits in the
/// client library's buffer — so that `received` plus those equals the library's own delivered
/// count, which is what it compares `max` with — then sends `UNSUB <sid> <max>` with
/// `max = received + buffered + tail`. Returns the buffered messages (serve them first) and
/// `max`. The subscription then ends by itself after exactly `max` messages.
pub async fn unsubscribe_counted(
    subscriber: &mut async_nats::Subscriber,
    received: u64,
    tail: u64,
) -> Result<(Vec<async_nats::Message>, u64), async_nats::UnsubscribeError> {
    use futures::FutureExt as _;
    let mut buffered = Vec::new();
    while let Some(Some(message)) = subscriber.next().now_or_never() {
        buffered.push(message);
    }
    let max = received + buffered.len() as u64 + tail;
    subscriber.unsubscribe_after(max).await?;
    Ok((buffered, max))
}

/// Arrival times of the requests of the last `span`, to size a stopping endpoint's tail.
struct RecentArrivals {
    span: Duration,
    times: std::collections::VecDeque<Instant>,
}

impl RecentArrivals {
    fn new(span: Duration) -> RecentArrivals {
        RecentArrivals {
            span,
            times: std::collections::VecDeque::new(),
        }
    }

    fn record(&mut self, at: Instant) {
        self.times.push_back(at);
        self.forget_older_than(at);
    }

    /// How many arrived in the last `span` before `now`.
    fn count(&mut self, now: Instant) -> u64 {
        self.forget_older_than(now);
        self.times.len() as u64
    }

    fn forget_older_than(&mut self, now: Instant) {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.span)
        {
            self.times.pop_front();
        }
    }
}

/// Checks a request's reply subject against its caller (see [`reply_guard`]): the reply subject
/// when allowed; otherwise the request is counted, logged (endpoint, caller, merchant id and the
/// refused subject, never the payload) and `None` is returned: nothing more may be done with it.
fn admit(
    ctx: &Context,
    rules: &ReplyRules,
    name: &'static str,
    caller_of: CallerOf,
    message: &async_nats::Message,
) -> Option<Subject> {
    let caller = caller_of(&ctx.subjects, message.subject.as_str());
    if let (Some(caller), Some(reply)) = (caller, message.reply.as_ref()) {
        if rules.allows(caller, reply.as_str()) {
            return Some(reply.clone());
        }
    }
    let kind = caller.map(Caller::as_str).unwrap_or("unknown");
    ctx.metrics.observe_refused_reply(name, kind);
    // The refused subject is the attacker's own choice: shown escaped and cut short.
    let refused: String = message
        .reply
        .as_ref()
        .map(|r| r.as_str().chars().take(120).collect())
        .unwrap_or_default();
    tracing::warn!(
        endpoint = name,
        caller = kind,
        merchant_id = caller.map(Caller::merchant_id).unwrap_or(0),
        reply = ?refused,
        "request dropped: its reply subject does not belong to its caller"
    );
    None
}

/// Counts the request and sends its reply (a fault in the request's language) to `reply`, a
/// subject [`admit`] allowed. The only place a reply is published.
async fn respond(
    ctx: &Context,
    name: &'static str,
    reply_to: Subject,
    request: &async_nats::Message,
    reply: Reply,
    started: Instant,
) {
    let outcome = match &reply {
        Ok(_) => "ok",
        Err(f) => f.name(),
    };
    ctx.metrics
        .observe_request(name, outcome, started.elapsed());
    let bytes = reply.unwrap_or_else(|fault| fault_bytes(fault, sniff_language(&request.payload)));
    if let Err(e) = ctx.client.publish(reply_to, bytes.into()).await {
        tracing::warn!(endpoint = name, error = %e, "could not send the reply");
    }
}

/// Adds one endpoint named `name` on `subject` (a queue subscription in `nats.queue_group`, so
/// replicas share the work) and serves it; see [`serve`].
pub async fn add_endpoint<F, Fut>(
    ctx: Arc<Context>,
    name: &'static str,
    subject: String,
    caller_of: CallerOf,
    handler: F,
) -> anyhow::Result<EndpointInfo>
where
    F: Fn(Arc<Context>, async_nats::Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let subscriber = ctx
        .client
        .queue_subscribe(subject.clone(), ctx.settings.nats.queue_group.clone())
        .await
        .map_err(|e| anyhow::anyhow!("subscribing endpoint {name} on {subject}: {e}"))?;
    serve(ctx, name, subscriber, caller_of, handler);
    Ok(EndpointInfo { name, subject })
}

/// Serves one subscription: each request admitted by [`admit`] first; one answered at once
/// (from memory) by the loop itself, any other in its own task; all tracked for shutdown, under
/// the request deadline, always answered. On `ctx.stop` the subscription is ended with the
/// counted unsubscribe of the module header (fallback: a drain), and everything the server routed
/// to it is still answered.
pub fn serve<F, Fut>(
    ctx: Arc<Context>,
    name: &'static str,
    mut subscriber: async_nats::Subscriber,
    caller_of: CallerOf,
    handler: F,
) where
    F: Fn(Arc<Context>, async_nats::Message) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let deadline = Duration::from_millis(ctx.settings.service.request_timeout_ms);
    let rules = ReplyRules::from_settings(&ctx.settings.nats);
    let tracker = ctx.tracker.clone();
    let stop = ctx.stop.clone();
    let tail_span = Duration::from_millis(ctx.settings.service.drain_tail_ms);
    let window = Duration::from_millis(ctx.settings.service.drain_window_ms);
    // The loop is tracked too: a request it answers itself is in flight until its reply is sent.
    ctx.tracker.clone().spawn(async move {
        let mut phase = Phase::Serving;
        // Requests taken from the subscription so far (the client library's delivered count,
        // minus what still waits in its channel), and their recent arrival times.
        let mut received: u64 = 0;
        let mut recent = RecentArrivals::new(tail_span);
        // Taken from the client's buffer when the fence was set, served before anything else.
        let mut pending = std::collections::VecDeque::new();
        loop {
            let message = if let Some(m) = pending.pop_front() {
                m
            } else {
                match phase {
                Phase::Serving => tokio::select! {
                    _ = stop.cancelled() => {
                        let tail = recent.count(Instant::now());
                        if tail_span.is_zero() || tail == 0 {
                            // No fence (drain_tail_ms = 0, for comparison only), or an idle
                            // endpoint: a fence would wait the whole window for requests that
                            // do not come, and nothing is likely on the wire.
                            if let Err(e) = subscriber.drain().await {
                                tracing::warn!(endpoint = name, error = %e, "could not drain");
                                break;
                            }
                            let why = if tail_span.is_zero() { "no fence" } else { "idle" };
                            phase = Phase::Draining { why };
                            continue;
                        }
                        match unsubscribe_counted(&mut subscriber, received, tail.max(MIN_TAIL)).await {
                            Ok((buffered, max)) => {
                                pending.extend(buffered);
                                let until = tokio::time::Instant::now() + window;
                                phase = Phase::Tail { max, until };
                            }
                            Err(e) => {
                                tracing::warn!(endpoint = name, error = %e, "could not unsubscribe");
                                break;
                            }
                        }
                        continue;
                    }
                    m = subscriber.next() => match m { Some(m) => m, None => break },
                },
                Phase::Tail { max, until } => {
                    match tokio::time::timeout_at(until, subscriber.next()).await {
                        Ok(Some(m)) => m,
                        Ok(None) => {
                            tracing::info!(
                                endpoint = name,
                                how = "fenced",
                                requests = received,
                                max,
                                "endpoint stopped"
                            );
                            break;
                        }
                        Err(_) => {
                            // Too little traffic to reach the fence in time: a plain drain.
                            if let Err(e) = subscriber.drain().await {
                                tracing::warn!(endpoint = name, error = %e, "could not drain");
                                break;
                            }
                            phase = Phase::Draining { why: "window" };
                            continue;
                        }
                    }
                }
                Phase::Draining { why } => {
                    match tokio::time::timeout(DRAIN_FENCE, subscriber.next()).await {
                        Ok(Some(m)) => m,
                        Ok(None) => {
                            tracing::info!(
                                endpoint = name,
                                how = "drained",
                                why,
                                requests = received,
                                "endpoint stopped"
                            );
                            break;
                        }
                        Err(_) => {
                            tracing::warn!(endpoint = name, "drain not confirmed by the server");
                            break;
                        }
                    }
                }
                }
            };
            received += 1;
            let started = Instant::now();
            recent.record(started);
            let Some(reply_to) = admit(&ctx, &rules, name, caller_of, &message) else {
                continue;
            };
            let mut work: Pending = Box::pin(handler(ctx.clone(), message.clone()));
            // A request answered from memory (an offer or token list of a cached customer) is
            // done at its first poll: answer it here, without a task of its own (spawning one
            // costs more than the answer). Anything that waits is moved to its own task, with
            // its deadline; its next poll there registers the task's waker.
            let first = work.as_mut().poll(&mut std::task::Context::from_waker(
                futures::task::noop_waker_ref(),
            ));
            if let Poll::Ready(reply) = first {
                respond(&ctx, name, reply_to, &message, reply, started).await;
                continue;
            }
            let ctx = ctx.clone();
            tracker.spawn(async move {
                let reply = match tokio::time::timeout_at((started + deadline).into(), work).await {
                    Ok(reply) => reply,
                    Err(_) => Err(Fault::Timeout),
                };
                respond(&ctx, name, reply_to, &message, reply, started).await;
            });
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_endpoints_tail_is_what_arrived_in_the_last_span() {
        let mut recent = RecentArrivals::new(Duration::from_millis(500));
        let t0 = Instant::now();
        for ms in [0, 100, 200, 450] {
            recent.record(t0 + Duration::from_millis(ms));
        }
        assert_eq!(recent.count(t0 + Duration::from_millis(450)), 4);
        // 550 ms later than the first: it no longer counts.
        assert_eq!(recent.count(t0 + Duration::from_millis(550)), 3);
        assert_eq!(recent.count(t0 + Duration::from_millis(2000)), 0);
    }
}
