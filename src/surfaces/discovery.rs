//! `$SRV` discovery (the NATS micro-service protocol's PING and INFO), re-implemented on our own
//! subscriptions so its replies pass the same reply-subject check as every endpoint: the
//! async-nats service API answers them to any reply subject, which made it a second confused
//! deputy (issue 12). Only under `nats.health_inbox_prefix` (`_INBOX.`) is answered.
//!
//! Subjects, as the protocol defines them: `$SRV.<VERB>`, `$SRV.<VERB>.oneclick` and
//! `$SRV.<VERB>.oneclick.<id>`, each a plain (non-queue) subscription so every instance answers.
//! `$SRV.STATS` is not served: the Prometheus endpoint `/metrics` has the figures.

use std::sync::Arc;

use serde_json::json;

use super::reply_guard::Caller;
use super::{serve, Context, EndpointInfo};
use crate::subjects::SERVICE_NAME;

/// Subscribes PING and INFO for `endpoints` (what INFO lists).
pub async fn start(ctx: Arc<Context>, endpoints: Vec<EndpointInfo>) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let queue_group = ctx.settings.nats.queue_group.clone();
    let ping = serde_json::to_vec(&json!({
        "type": "io.nats.micro.v1.ping_response",
        "name": SERVICE_NAME,
        "id": id,
        "version": version,
        "metadata": {},
    }))?;
    let info = serde_json::to_vec(&json!({
        "type": "io.nats.micro.v1.info_response",
        "name": SERVICE_NAME,
        "id": id,
        "version": version,
        "metadata": {},
        "description": "oneclick: One Click card-on-file payments (gateway and merchant services)",
        "endpoints": endpoints
            .iter()
            .map(|e| json!({
                "name": e.name,
                "subject": e.subject,
                "queue_group": queue_group,
                "metadata": null,
            }))
            .collect::<Vec<_>>(),
    }))?;
    for (verb, name, body) in [("PING", "srv_ping", ping), ("INFO", "srv_info", info)] {
        let body = Arc::new(body);
        for subject in [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.{SERVICE_NAME}"),
            format!("$SRV.{verb}.{SERVICE_NAME}.{id}"),
        ] {
            let subscriber = ctx
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| anyhow::anyhow!("subscribing {subject}: {e}"))?;
            let body = body.clone();
            serve(
                ctx.clone(),
                name,
                subscriber,
                |_, _| Some(Caller::Anyone),
                move |_, _| {
                    let body = body.clone();
                    async move { Ok(body.as_ref().clone()) }
                },
            );
        }
    }
    Ok(())
}
