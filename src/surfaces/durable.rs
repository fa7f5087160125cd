//! The durable gateway path (JetStream) for commands that carry no card data (R8): Token Pay,
//! recurring charges, deletions and status changes.
//!
//! Streams (created idempotently at start; see docs/protocol.md for the reasons):
//! - `<PREFIX>_CMD` over `<p>.v1.cmd.>`: work-queue retention (a command is removed once
//!   acknowledged), file storage, duplicate window `nats.duplicate_window_secs` (a gateway's
//!   re-publish with the same `Nats-Msg-Id` is dropped by the server), discard new (a full
//!   stream refuses new commands rather than dropping accepted ones), deny purge, deny delete.
//! - `<PREFIX>_EVT` over `<p>.v1.evt.>`: limits retention for `nats.events_max_age_days`,
//!   results and dead letters, each published with `Nats-Msg-Id` = command id so a redelivered
//!   command yields one event; deny purge, deny delete.
//!
//! Both streams refuse purge and message deletion (issue 12: a purge through a confused deputy
//! lost 1,477 acknowledged commands). `get_or_create_stream` never changes a stream that exists,
//! so at start the flags and the replicas (`nats.stream_replicas`: 1 on a single server, 3 in a
//! cluster) of an existing stream are compared and, when they differ, the stream is updated and
//! the change logged (a store made by an older version, or by a single-server deployment moved
//! to a cluster, upgrades in place). NATS lets the deny flags be turned on, not off.
//!
//! Consumers: one durable pull consumer per partition (`<p>.v1.cmd.<n>.>`), explicit acks,
//! `max_ack_pending = 1` so one partition (and so one customer) is processed strictly in order
//! across all instances, ack wait `nats.ack_wait_secs`, `max_deliver`, backoff.
//!
//! Per message: parse → check it against its subject (partition and kind, else fault 1/5 and a
//! dead letter: a command on a foreign partition would break per-customer order) → the engine applies it (idempotent: a redelivery of an applied command
//! returns the stored result and applies nothing) → publish the event and wait for its ack →
//! double-ack the command. The ack comes only after the effect is committed. A transient failure
//! is NAKed with the backoff delay; a permanent fault becomes a failed event; a command still
//! failing at its last delivery, or one that does not parse, becomes a dead-letter event and is
//! terminated, never an endless loop.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
use futures::StreamExt;
use oneclick_actors::Fault;

use super::{to_fault, Context};
use crate::wire::command::{CommandEvent, CommandRequest, DeadLetter};
use crate::wire::gateway::{PaymentReply, TokenRemovedReply};
use crate::wire::merchant::StatusReply;
use crate::wire::{parse_request, CommandEnvelope, FaultBody};

/// How long start-up retries creating or updating the streams.
const STREAMS_WITHIN: Duration = Duration::from_secs(30);

/// Creates the streams (idempotent) and starts one consumer loop per partition.
pub async fn start(ctx: Arc<Context>) -> anyhow::Result<()> {
    let js = jetstream::new(ctx.client.clone());
    // A cluster that has just formed can refuse an R3 stream for a few seconds ("no suitable
    // peers for placement, peer offline") although every node answers health: retry for a
    // bounded time instead of exiting (seen in tests/nats_cluster.rs).
    let until = tokio::time::Instant::now() + STREAMS_WITHIN;
    loop {
        match ensure_streams(&ctx, &js).await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < until => {
                tracing::warn!(error = %e, "streams not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let stream = js.get_stream(ctx.subjects.command_stream()).await?;
    let n = &ctx.settings.nats;
    for partition in 0..n.partitions {
        let name = ctx.subjects.command_consumer(partition);
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: ctx.subjects.command_partition_filter(partition),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(n.ack_wait_secs),
                    max_deliver: n.max_deliver,
                    backoff: n
                        .backoff_ms
                        .iter()
                        .map(|ms| Duration::from_millis(*ms))
                        .collect(),
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
        let ctx2 = ctx.clone();
        let js2 = js.clone();
        ctx.tracker
            .spawn(async move { consume(ctx2, js2, consumer, partition).await });
    }
    Ok(())
}

/// The two streams with the settings described in the module header; an existing stream's
/// `deny_purge` / `deny_delete` are brought up to date (see the module header).
pub async fn ensure_streams(ctx: &Context, js: &jetstream::Context) -> anyhow::Result<()> {
    let n = &ctx.settings.nats;
    for config in [
        stream::Config {
            name: ctx.subjects.command_stream(),
            subjects: vec![ctx.subjects.command_wildcard()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(n.duplicate_window_secs),
            discard: stream::DiscardPolicy::New,
            deny_delete: true,
            deny_purge: true,
            num_replicas: n.stream_replicas,
            ..Default::default()
        },
        stream::Config {
            name: ctx.subjects.event_stream(),
            subjects: vec![ctx.subjects.event_wildcard()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(n.duplicate_window_secs),
            max_age: Duration::from_secs(n.events_max_age_days * 86_400),
            deny_delete: true,
            deny_purge: true,
            num_replicas: n.stream_replicas,
            ..Default::default()
        },
    ] {
        let name = config.name.clone();
        let mut existing = js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
        let current = existing
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("stream {name} info: {e}"))?
            .config
            .clone();
        if let Some(updated) = bring_up_to_date(&current, &config) {
            js.update_stream(updated.clone()).await.map_err(|e| {
                anyhow::anyhow!("updating stream {name} (deny flags, replicas): {e}")
            })?;
            tracing::warn!(
                stream = %name,
                deny_purge_was = current.deny_purge,
                deny_delete_was = current.deny_delete,
                replicas_was = current.num_replicas,
                deny_purge = updated.deny_purge,
                deny_delete = updated.deny_delete,
                replicas = updated.num_replicas,
                "stream updated: purge and message deletion refused, replicas as configured"
            );
        }
    }
    Ok(())
}

/// The existing stream's configuration brought up to date, when it differs, with every other
/// setting as the operator has it: the wanted deny flags turned on (NATS lets them be turned on,
/// not off) and the replicas set to `nats.stream_replicas` (an R1 stream of a single-server
/// deployment becomes R3 when the service restarts against a cluster with `stream_replicas = 3`;
/// the server copies the data to the new replicas). `None` when nothing needs to change.
pub fn bring_up_to_date(
    current: &stream::Config,
    wanted: &stream::Config,
) -> Option<stream::Config> {
    let purge = wanted.deny_purge && !current.deny_purge;
    let delete = wanted.deny_delete && !current.deny_delete;
    let replicas = current.num_replicas.max(1) != wanted.num_replicas.max(1);
    if !purge && !delete && !replicas {
        return None;
    }
    let mut updated = current.clone();
    updated.deny_purge |= wanted.deny_purge;
    updated.deny_delete |= wanted.deny_delete;
    updated.num_replicas = wanted.num_replicas;
    Some(updated)
}

async fn consume(
    ctx: Arc<Context>,
    js: jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
    partition: u32,
) {
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(partition, error = %e, "cannot consume commands");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            m = messages.next() => m,
        };
        match next {
            Some(Ok(message)) => process(&ctx, &js, message).await,
            Some(Err(e)) => {
                tracing::warn!(partition, error = %e, "command consumer hiccup");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => break,
        }
    }
}

/// Faults worth another delivery (the cause may pass), as opposed to a final answer.
fn is_transient(fault: Fault) -> bool {
    matches!(
        fault,
        Fault::Unavailable | Fault::Timeout | Fault::ShuttingDown | Fault::Internal
    )
}

async fn process(ctx: &Context, js: &jetstream::Context, message: jetstream::Message) {
    let (delivered, stream_sequence) = match message.info() {
        Ok(info) => (info.delivered.max(1) as u64, info.stream_sequence),
        Err(_) => (1, 0),
    };
    let kind_name = ctx
        .subjects
        .parse_command(message.subject.as_str())
        .map(|(_, k)| k.as_str().to_string())
        .unwrap_or_else(|| "unknown".into());
    if delivered > 1 {
        ctx.metrics.observe_redelivery(&kind_name);
    }
    let envelope: CommandEnvelope =
        match parse_request(&message.payload, ctx.settings.service.max_request_bytes) {
            Ok(e) => e,
            Err(fault) => {
                dead_letter(
                    ctx,
                    js,
                    &message,
                    None,
                    &kind_name,
                    delivered,
                    stream_sequence,
                    fault,
                )
                .await;
                return;
            }
        };
    // Finding 9: a body on another partition (or of another kind) than its subject would
    // escape its customer's ordering; it is dead-lettered, nothing applied.
    if let Err(fault) = envelope.check_subject(
        &ctx.subjects,
        ctx.settings.nats.partitions,
        message.subject.as_str(),
    ) {
        dead_letter(
            ctx,
            js,
            &message,
            Some(envelope),
            &kind_name,
            delivered,
            stream_sequence,
            fault,
        )
        .await;
        return;
    }
    crash_hook(&envelope.command_id, delivered);
    let kind = envelope.kind();
    let command_id = envelope.command_id.clone();
    let merchant_id = envelope.merchant_id;
    let deadline = Duration::from_millis(ctx.settings.service.request_timeout_ms);
    let applied = match tokio::time::timeout(deadline, apply(ctx, envelope.clone())).await {
        Ok(r) => r,
        Err(_) => Err(Fault::Timeout),
    };
    let event = match applied {
        Ok(event) => event,
        Err(fault) if is_transient(fault) => {
            if delivered >= ctx.settings.nats.max_deliver.max(1) as u64 {
                dead_letter(
                    ctx,
                    js,
                    &message,
                    Some(envelope),
                    &kind_name,
                    delivered,
                    stream_sequence,
                    fault,
                )
                .await;
            } else {
                let delay = backoff(ctx, delivered);
                ctx.metrics.observe_command(kind.as_str(), "retry");
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            }
            return;
        }
        Err(fault) => CommandEvent::failed(command_id.clone(), kind, fault),
    };
    let outcome = if event.ok { "ok" } else { "fault" };
    let subject = ctx.subjects.event(merchant_id, kind);
    if publish(js, subject, &command_id, &event).await.is_err() {
        // The effect is committed; the redelivery will find the stored result and publish again.
        let _ = message
            .ack_with(AckKind::Nak(Some(backoff(ctx, delivered))))
            .await;
        return;
    }
    ctx.metrics.observe_command(kind.as_str(), outcome);
    if let Err(e) = message.double_ack().await {
        tracing::warn!(%command_id, error = %e, "command ack not confirmed; a redelivery will replay it");
    }
}

fn backoff(ctx: &Context, delivered: u64) -> Duration {
    let steps = &ctx.settings.nats.backoff_ms;
    let ms = steps
        .get((delivered as usize).saturating_sub(1))
        .or(steps.last())
        .copied()
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

/// Runs the command in the engine and builds its success event; a fault is returned as is.
async fn apply(ctx: &Context, envelope: CommandEnvelope) -> Result<CommandEvent, Fault> {
    let kind = envelope.kind();
    let command_id = envelope.command_id.clone();
    let merchant_id = envelope.merchant_id;
    let name = kind.as_str();
    let engine = &ctx.engine;
    let fail = |e| to_fault(name, merchant_id, e);
    Ok(match envelope.into_request()? {
        CommandRequest::TokenPay(req) => {
            let result = still_in_process(engine.token_pay(req).await.map_err(fail)?)?;
            ctx.metrics.observe_payment(&result);
            CommandEvent::succeeded(command_id, kind, &PaymentReply::from(result))
        }
        CommandRequest::RecurringCharge(req) => {
            let result = still_in_process(engine.recurring_charge(req).await.map_err(fail)?)?;
            ctx.metrics.observe_payment(&result);
            CommandEvent::succeeded(command_id, kind, &PaymentReply::from(result))
        }
        CommandRequest::DeleteCard(req) => {
            let removed = engine.delete_card(req).await.map_err(fail)?;
            CommandEvent::succeeded(command_id, kind, &TokenRemovedReply::from(removed))
        }
        CommandRequest::SetStatus(req) => {
            let changed = engine.set_status(req).await.map_err(fail)?;
            CommandEvent::succeeded(command_id, kind, &StatusReply::from(changed))
        }
    })
}

/// A redelivered payment whose first delivery died at the acquirer step answers `In Process`:
/// that is not a result to acknowledge. It is retried with backoff until the engine settles it
/// (after `engine.in_doubt_after_secs` it is recorded as Timeout) or, failing that, dead-lettered.
fn still_in_process(
    result: oneclick_actors::engine::replies::PaymentResult,
) -> Result<oneclick_actors::engine::replies::PaymentResult, Fault> {
    if result.order_state == oneclick_actors::domain::OrderState::InProcess {
        return Err(Fault::Unavailable);
    }
    Ok(result)
}

async fn publish<T: serde::Serialize>(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    body: &T,
) -> Result<(), ()> {
    let payload = serde_json::to_vec(body).map_err(|_| ())?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    match js
        .publish_with_headers(subject, headers, payload.into())
        .await
    {
        Ok(ack) => ack
            .await
            .map(|_| ())
            .map_err(|e| tracing::warn!(error = %e, "event not stored")),
        Err(e) => {
            tracing::warn!(error = %e, "event not published");
            Err(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    ctx: &Context,
    js: &jetstream::Context,
    message: &jetstream::Message,
    command: Option<CommandEnvelope>,
    kind: &str,
    deliveries: u64,
    stream_sequence: u64,
    fault: Fault,
) {
    let letter = DeadLetter {
        command_id: command.as_ref().map(|c| c.command_id.clone()),
        kind: kind.to_string(),
        merchant_id: command.as_ref().map(|c| c.merchant_id),
        deliveries,
        stream_sequence,
        fault: FaultBody::new(fault, oneclick_actors::Language::En),
        command,
    };
    let id = format!("dlq-{stream_sequence}");
    tracing::error!(
        kind,
        deliveries,
        stream_sequence,
        fault = fault.name(),
        "command dead-lettered"
    );
    ctx.metrics.observe_dead_letter(kind);
    if publish(js, ctx.subjects.dead_letter(kind), &id, &letter)
        .await
        .is_ok()
    {
        let _ = message.ack_with(AckKind::Term).await;
    } else {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
    }
}

/// Test hook for the crash-before-commit test: when `ONECLICK_TEST_CRASH_BEFORE_COMMIT` names
/// this command id, the first delivery aborts the process before the engine runs, exactly like a
/// crash. Never set in production.
fn crash_hook(command_id: &str, delivered: u64) {
    if delivered == 1
        && std::env::var("ONECLICK_TEST_CRASH_BEFORE_COMMIT").is_ok_and(|id| id == command_id)
    {
        eprintln!("ONECLICK_TEST_CRASH_BEFORE_COMMIT: aborting before commit (test hook)");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(deny_purge: bool, deny_delete: bool) -> stream::Config {
        stream::Config {
            name: "ONECLICK_EVT".into(),
            max_age: Duration::from_secs(42),
            deny_purge,
            deny_delete,
            num_replicas: 1,
            ..Default::default()
        }
    }

    #[test]
    fn an_old_stream_gets_both_deny_flags_and_keeps_its_other_settings() {
        let wanted = config(true, true);
        let updated = bring_up_to_date(&config(false, true), &wanted).expect("an update");
        assert!(updated.deny_purge && updated.deny_delete);
        assert_eq!(updated.max_age, Duration::from_secs(42));
        assert!(bring_up_to_date(&config(false, false), &wanted).is_some());
    }

    #[test]
    fn a_stream_that_already_denies_purge_and_delete_is_left_alone() {
        assert!(bring_up_to_date(&config(true, true), &config(true, true)).is_none());
        // A server that reports 0 replicas means one.
        let mut zero = config(true, true);
        zero.num_replicas = 0;
        assert!(bring_up_to_date(&zero, &config(true, true)).is_none());
    }

    #[test]
    fn an_r1_stream_is_scaled_to_the_configured_replicas_and_keeps_its_other_settings() {
        let mut wanted = config(true, true);
        wanted.num_replicas = 3;
        let updated = bring_up_to_date(&config(true, true), &wanted).expect("an update");
        assert_eq!(updated.num_replicas, 3);
        assert_eq!(updated.max_age, Duration::from_secs(42));
        assert!(updated.deny_purge && updated.deny_delete);
    }
}
