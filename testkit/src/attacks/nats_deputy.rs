//! The confused deputy over NATS (issue 12, finding 1): a caller names a reply subject that is not
//! its own inbox, so that the service, answering with its own NATS rights, purges its streams,
//! forges an event, appends a command or answers into another merchant's inbox.
//!
//! Every attack runs against a nats-server started with the SHIPPED `deploy/nats/nats.conf`
//! ([`NatsServer::start_shipped`]) and the real `oneclick` binary connected as user `oneclick`
//! with prefix `oneclick` (the shipped permissions name its streams, `ONECLICK_CMD` and
//! `ONECLICK_EVT`). The attacker is the example merchant's NATS user `merchant_452739`, which
//! may publish only under `oneclick.v1.merchant.452739.>` — but with any reply subject.
//! The `$SRV` variant needs a client allowed to publish to `$SRV.*`, which the shipped config
//! gives nobody but the service; it runs on an open server (no permissions at all, as the
//! service's old `$JS.API.>` rights were) to show that the code alone refuses it.
//!
//! `*_on` functions run an attack on a stack the caller started (so a test can also read the
//! refusal counter); the plain functions start their own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{json, Value};

use super::AttackOutcome;
use crate::nats::{card, merchant_auth, merge, order, NatsServer, OneClick, DEMO_MERCHANT};

/// The merchant whose inbox and events the attacker goes after.
pub const OTHER_MERCHANT: i64 = 452740;
const VISA: &str = "4111111111111111";
const PREFIX: &str = "oneclick";
const COMMAND_STREAM: &str = "ONECLICK_CMD";
const EVENT_STREAM: &str = "ONECLICK_EVT";
/// Partitions of the service under attack (its default).
const PARTITIONS: u32 = 8;

/// The shipped NATS config, the service as user `oneclick`, and one client per NATS user.
pub struct ShippedStack {
    pub nats: NatsServer,
    pub app: OneClick,
    pub dir: tempfile::TempDir,
    /// User `oneclick` (the operator's view: stream info, any inbox).
    pub service: async_nats::Client,
    /// User `gateway`, inbox `_INBOX.gateway`.
    pub gateway: async_nats::Client,
    /// User `merchant_452739`, inbox `_INBOX.merchant_452739`: the attacker.
    pub merchant: async_nats::Client,
}

impl ShippedStack {
    /// Starts it all; `configure` may add settings to the service before it starts.
    pub async fn start(configure: impl FnOnce(&mut OneClick)) -> ShippedStack {
        let nats = NatsServer::start_shipped();
        let users = nats.users.clone().expect("shipped users");
        let url = nats.url();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut app = OneClick::prepare(dir.path(), &url, None);
        users.serve_as_shipped(&mut app, PREFIX);
        configure(&mut app);
        let service = users.service(&url).await;
        let gateway = users.gateway(&url).await;
        // The gateway may ask the health subject (the service user may not publish to it).
        app.start(&gateway).await;
        let merchant = users.merchant(&url).await;
        ShippedStack {
            nats,
            app,
            dir,
            service,
            gateway,
            merchant,
        }
    }

    /// `oneclick_replies_refused_total`, summed over its labels.
    pub fn refused(&self) -> u64 {
        metric_sum(&self.app.metrics(), "oneclick_replies_refused_total")
    }

    fn token_list_body(customer: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"merchant": merchant_auth(), "customernumber": customer}))
            .expect("json")
    }

    /// The attack itself: a token list of merchant 452739 whose reply subject is `reply`. The
    /// body `{}` makes the reply a fault, a JSON object: JetStream's API takes it as a request
    /// with no options (a purge of everything), where a token list's `[]` would not parse.
    pub async fn token_list_with_reply(&self, reply: &str) {
        self.merchant
            .publish_with_reply(
                format!("{PREFIX}.v1.merchant.{DEMO_MERCHANT}.token.list"),
                reply.to_string(),
                b"{}".to_vec().into(),
            )
            .await
            .expect("publish");
        self.merchant.flush().await.expect("flush");
    }

    /// The control: the same request with the merchant's own inbox is answered.
    pub async fn legitimate_token_list(&self) -> bool {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            self.merchant.request(
                format!("{PREFIX}.v1.merchant.{DEMO_MERCHANT}.token.list"),
                Self::token_list_body("deputy").into(),
            ),
        )
        .await;
        matches!(reply, Ok(Ok(m)) if serde_json::from_slice::<Value>(&m.payload).is_ok_and(|v| v.is_array()))
    }

    /// `(messages, last sequence)` of a stream, read as the service user.
    pub async fn stream_state(&self, name: &str) -> (u64, u64) {
        let js = jetstream::new(self.service.clone());
        let mut stream = js.get_stream(name).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        (info.state.messages, info.state.last_sequence)
    }

    /// Saves a card for `customer` as the gateway; its token.
    pub async fn save_card(&self, customer: &str) -> String {
        let body = merge(
            order(&format!("save-{customer}"), "1.00", customer),
            json!({"card": card(VISA, "123")}),
        );
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            self.gateway.request(
                format!("{PREFIX}.v1.gw.pay"),
                serde_json::to_vec(&body).expect("json").into(),
            ),
        )
        .await
        .expect("a reply")
        .expect("the gateway's request");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("json");
        reply["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token saved: {reply}"))
            .to_string()
    }

    /// Publishes `n` Token Pay commands of `customer` (one partition) as the gateway and waits
    /// for JetStream's ack of each; their command ids.
    pub async fn publish_commands(
        &self,
        tag: &str,
        customer: &str,
        token: &str,
        n: usize,
    ) -> Vec<String> {
        let js = jetstream::new(self.gateway.clone());
        let subject = format!(
            "{PREFIX}.v1.cmd.{}.token_pay",
            fnv1a32(customer.as_bytes()) % PARTITIONS
        );
        let mut acks = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("{tag}-{i}");
            let body = json!({"command_id": id, "kind": "token_pay", "merchant_id": DEMO_MERCHANT,
                              "order_number": format!("{tag}-o-{i}"), "order_amount": "1.00",
                              "order_currency": "RUB", "customer_number": customer, "token": token});
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            acks.push(
                js.publish_with_headers(
                    subject.clone(),
                    headers,
                    serde_json::to_vec(&body).expect("json").into(),
                )
                .await
                .expect("publish"),
            );
            ids.push(id);
        }
        for ack in acks {
            ack.await.expect("acknowledged by JetStream");
        }
        ids
    }
}

/// Sum of every sample of `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Distinct command ids of the events read from `events` until all of `ids` are seen or none
/// came for `quiet`.
async fn results_of(events: &mut async_nats::Subscriber, ids: &[String], quiet: Duration) -> usize {
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    while seen.len() < wanted.len() {
        match tokio::time::timeout(quiet, events.next()).await {
            Ok(Some(m)) => {
                if let Ok(v) = serde_json::from_slice::<Value>(&m.payload) {
                    if let Some(id) = v["command_id"].as_str() {
                        if wanted.contains(id) {
                            seen.insert(id.to_string());
                        }
                    }
                }
            }
            _ => break,
        }
    }
    seen.len()
}

/// Whether anything arrives on `sub` within `within`. A server status message (no responders,
/// sent by the server to the requester alone) is not the deputy's doing and is skipped.
async fn anything(sub: &mut async_nats::Subscriber, within: Duration) -> Option<String> {
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, sub.next()).await {
            Ok(Some(m)) if m.status.is_some() => continue,
            Ok(Some(m)) => return Some(format!("{} ({} bytes)", m.subject, m.payload.len())),
            _ => return None,
        }
    }
}

/// Purges the command stream through the service while `commands` acknowledged durable commands
/// wait in it; succeeds when any of them produces no result.
pub async fn purge_command_stream(commands: usize) -> AttackOutcome {
    let stack = ShippedStack::start(slow_acquirer).await;
    purge_command_stream_on(&stack, commands).await
}

/// A few ms per payment, so the commands of one partition wait in the stream for seconds.
pub fn slow_acquirer(app: &mut OneClick) {
    app.set_env("ONECLICK__ACQUIRER__SIMULATOR_LATENCY_MS", "5");
}

pub async fn purge_command_stream_on(stack: &ShippedStack, commands: usize) -> AttackOutcome {
    let name = "purge the command stream via a reply subject";
    let token = stack.save_card("deputy-cmd").await;
    let mut events = stack
        .gateway
        .subscribe(format!("{PREFIX}.v1.evt.{DEMO_MERCHANT}.token_pay"))
        .await
        .expect("events");
    stack.gateway.flush().await.expect("flush");
    let ids = stack
        .publish_commands("deputy-cmd", "deputy-cmd", &token, commands)
        .await;
    let (pending, _) = stack.stream_state(COMMAND_STREAM).await;
    stack
        .token_list_with_reply(&format!("$JS.API.STREAM.PURGE.{COMMAND_STREAM}"))
        .await;
    let control = stack.legitimate_token_list().await;
    let results = results_of(&mut events, &ids, Duration::from_secs(15)).await;
    let lost = ids.len() - results;
    AttackOutcome {
        name,
        succeeded: lost > 0 || !control,
        evidence: format!(
            "{} commands acked by JetStream, {pending} still in the stream when the attack was sent; \
             {results} produced a result, {lost} lost; control request answered: {control}",
            ids.len()
        ),
    }
}

/// Purges the event stream through the service; succeeds when it holds fewer events after.
pub async fn purge_event_stream() -> AttackOutcome {
    let stack = ShippedStack::start(|_| {}).await;
    purge_event_stream_on(&stack).await
}

pub async fn purge_event_stream_on(stack: &ShippedStack) -> AttackOutcome {
    let name = "purge the event stream via a reply subject";
    let token = stack.save_card("deputy-evt").await;
    let mut events = stack
        .gateway
        .subscribe(format!("{PREFIX}.v1.evt.{DEMO_MERCHANT}.token_pay"))
        .await
        .expect("events");
    stack.gateway.flush().await.expect("flush");
    let ids = stack
        .publish_commands("deputy-evt", "deputy-evt", &token, 5)
        .await;
    let results = results_of(&mut events, &ids, Duration::from_secs(15)).await;
    let (before, _) = stack.stream_state(EVENT_STREAM).await;
    stack
        .token_list_with_reply(&format!("$JS.API.STREAM.PURGE.{EVENT_STREAM}"))
        .await;
    let control = stack.legitimate_token_list().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = stack.stream_state(EVENT_STREAM).await;
    AttackOutcome {
        name,
        // The probe needs events to lose: all five results must be there first.
        succeeded: after < before || results < ids.len() || !control,
        evidence: format!(
            "{results}/{} results stored; event stream held {before} messages before, {after} after; \
             control request answered: {control}",
            ids.len()
        ),
    }
}

/// Makes the service publish its reply as an event of another merchant; succeeds when a
/// listener on that merchant's events sees anything or the event stream grows.
pub async fn fake_event_for_another_merchant() -> AttackOutcome {
    let stack = ShippedStack::start(|_| {}).await;
    fake_event_for_another_merchant_on(&stack).await
}

pub async fn fake_event_for_another_merchant_on(stack: &ShippedStack) -> AttackOutcome {
    let name = "forge an event of another merchant via a reply subject";
    let subject = format!("{PREFIX}.v1.evt.{OTHER_MERCHANT}.token_pay");
    let mut listener = stack.gateway.subscribe(subject.clone()).await.expect("sub");
    stack.gateway.flush().await.expect("flush");
    let (_, before) = stack.stream_state(EVENT_STREAM).await;
    stack.token_list_with_reply(&subject).await;
    let control = stack.legitimate_token_list().await;
    let seen = anything(&mut listener, Duration::from_secs(2)).await;
    let (_, after) = stack.stream_state(EVENT_STREAM).await;
    AttackOutcome {
        name,
        succeeded: seen.is_some() || after != before || !control,
        evidence: format!(
            "delivered on {subject}: {}; event stream last sequence {before} → {after}; \
             control request answered: {control}",
            seen.unwrap_or_else(|| "nothing".into())
        ),
    }
}

/// Makes the service append its reply to the command stream; succeeds when the stream's last
/// sequence moves.
pub async fn append_command() -> AttackOutcome {
    let stack = ShippedStack::start(|_| {}).await;
    append_command_on(&stack).await
}

pub async fn append_command_on(stack: &ShippedStack) -> AttackOutcome {
    let name = "append a command via a reply subject";
    let subject = format!("{PREFIX}.v1.cmd.0.token_pay");
    let mut dead_letters = stack
        .gateway
        .subscribe(format!("{PREFIX}.v1.evt.dlq.>"))
        .await
        .expect("sub");
    stack.gateway.flush().await.expect("flush");
    let (_, before) = stack.stream_state(COMMAND_STREAM).await;
    stack.token_list_with_reply(&subject).await;
    let control = stack.legitimate_token_list().await;
    let dead = anything(&mut dead_letters, Duration::from_secs(2)).await;
    let (_, after) = stack.stream_state(COMMAND_STREAM).await;
    AttackOutcome {
        name,
        succeeded: after != before || dead.is_some() || !control,
        evidence: format!(
            "command stream last sequence {before} → {after}; dead letter: {}; control request answered: {control}",
            dead.unwrap_or_else(|| "none".into())
        ),
    }
}

/// Merchant 452739 names merchant 452740's inbox as its reply subject; succeeds when anything
/// arrives there.
pub async fn reply_into_another_merchants_inbox() -> AttackOutcome {
    let stack = ShippedStack::start(|_| {}).await;
    reply_into_another_merchants_inbox_on(&stack).await
}

pub async fn reply_into_another_merchants_inbox_on(stack: &ShippedStack) -> AttackOutcome {
    let name = "answer into another merchant's inbox";
    // The victim's inbox, watched with the service user's rights (any _INBOX).
    let mut victim = stack
        .service
        .subscribe(format!("_INBOX.merchant_{OTHER_MERCHANT}.>"))
        .await
        .expect("sub");
    stack.service.flush().await.expect("flush");
    stack
        .token_list_with_reply(&format!("_INBOX.merchant_{OTHER_MERCHANT}.stolen"))
        .await;
    let control = stack.legitimate_token_list().await;
    let seen = anything(&mut victim, Duration::from_secs(2)).await;
    AttackOutcome {
        name,
        succeeded: seen.is_some() || !control,
        evidence: format!(
            "delivered into merchant {OTHER_MERCHANT}'s inbox: {}; control request answered: {control}",
            seen.unwrap_or_else(|| "nothing".into())
        ),
    }
}

/// `$SRV.PING/INFO/STATS` with a reply subject outside `_INBOX.`, on an open server (see the
/// module header); succeeds when anything is published there. Control: `$SRV.PING` with a
/// normal inbox is answered. Returns the outcome and the refusal counter's increase.
pub async fn service_discovery_with_foreign_reply() -> (AttackOutcome, u64) {
    let name = "$SRV discovery answering a foreign reply subject";
    let stack = crate::nats::Stack::start().await;
    let before = metric_sum(&stack.app.metrics(), "oneclick_replies_refused_total");
    let mut trap = stack.client.subscribe("deputy.>").await.expect("sub");
    stack.client.flush().await.expect("flush");
    for verb in ["PING", "INFO", "STATS"] {
        for subject in [format!("$SRV.{verb}"), format!("$SRV.{verb}.oneclick")] {
            stack
                .client
                .publish_with_reply(subject, format!("deputy.{verb}"), "".into())
                .await
                .expect("publish");
        }
    }
    let control = matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            stack.client.request("$SRV.PING.oneclick", "".into())
        )
        .await,
        Ok(Ok(m)) if serde_json::from_slice::<Value>(&m.payload).is_ok_and(|v| v["name"] == "oneclick")
    );
    let seen = anything(&mut trap, Duration::from_secs(2)).await;
    let until = Instant::now() + Duration::from_secs(5);
    let mut after = before;
    while Instant::now() < until {
        after = metric_sum(&stack.app.metrics(), "oneclick_replies_refused_total");
        if after >= before + 4 {
            // PING and INFO on two subjects each (STATS is not served).
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (
        AttackOutcome {
            name,
            succeeded: seen.is_some() || !control,
            evidence: format!(
                "published to deputy.*: {}; control $SRV.PING answered: {control}; refused {}",
                seen.unwrap_or_else(|| "nothing".into()),
                after - before
            ),
        },
        after - before,
    )
}
