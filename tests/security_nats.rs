//! Issue 12, findings 1 and 9, as attacks against the real thing: a nats-server with the SHIPPED
//! deploy/nats/nats.conf, the real `oneclick` binary as user `oneclick`, the attacker as the
//! example merchant's NATS user. The attacks live in `testkit/src/attacks/nats_deputy.rs` (the
//! red-team scenario runs the same functions); each asserts the attack's effect is absent, that a
//! legitimate request is still answered, and that the refusal counter moved.

use oneclick_testkit as support;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use serde_json::{json, Value};
use support::attacks::nats_deputy::{self, ShippedStack};
use support::attacks::AttackOutcome;
use support::nats::*;

fn assert_failed(outcome: &AttackOutcome) {
    assert!(
        !outcome.succeeded,
        "attack `{}` succeeded: {}",
        outcome.name, outcome.evidence
    );
    eprintln!("{}: refused ({})", outcome.name, outcome.evidence);
}

/// Waits until the refusal counter passes `before`; its new value.
async fn refused_after(stack: &ShippedStack, before: u64) -> u64 {
    for _ in 0..50 {
        let now = stack.refused();
        if now > before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.refused()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_naming_the_command_stream_purge_as_reply_loses_no_acknowledged_command() {
    let stack = ShippedStack::start(nats_deputy::slow_acquirer).await;
    let before = stack.refused();
    let outcome = nats_deputy::purge_command_stream_on(&stack, 1_500).await;
    assert_failed(&outcome);
    assert!(
        refused_after(&stack, before).await > before,
        "the dropped request is counted"
    );
    let log = stack.app.log_text();
    assert!(
        log.contains("request dropped: its reply subject does not belong to its caller"),
        "a warning names the drop"
    );
    assert!(
        !log.contains("\"password\"") && !log.contains("demo-password"),
        "the warning carries no payload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_subjects_outside_the_merchants_own_inbox_purge_forge_append_and_deliver_nothing() {
    let stack = ShippedStack::start(|_| {}).await;
    let mut counted = stack.refused();
    for attack in 0..4 {
        // One at a time, so each one's refusal is seen on the counter.
        let outcome = match attack {
            0 => nats_deputy::purge_event_stream_on(&stack).await,
            1 => nats_deputy::fake_event_for_another_merchant_on(&stack).await,
            2 => nats_deputy::append_command_on(&stack).await,
            _ => nats_deputy::reply_into_another_merchants_inbox_on(&stack).await,
        };
        assert_failed(&outcome);
        let now = refused_after(&stack, counted).await;
        assert!(
            now > counted,
            "`{}` was not counted ({counted} → {now})",
            outcome.name
        );
        counted = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_discovery_never_answers_a_reply_subject_outside_the_inbox() {
    let (outcome, refused) = nats_deputy::service_discovery_with_foreign_reply().await;
    assert_failed(&outcome);
    // PING and INFO on two subjects each; STATS is not served (nobody answers it at all).
    assert!(refused >= 4, "each $SRV request was counted: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_merchant_replies_go_only_to_their_own_inbox_prefix() {
    let stack = Stack::start().await;
    // Legitimate: answered.
    let offer = stack.gw("offer", order("in-1", "1.00", "inbox-1")).await;
    assert!(offer.get("fault").is_none(), "{offer}");
    // A gateway subject asked from a merchant's inbox, a merchant subject from the gateway's,
    // and merchant 452739 from merchant 452740's inbox: dropped.
    let cases = [
        (stack.app.subject("gw.offer"), "_INBOX.merchant_452739"),
        (
            stack
                .app
                .subject(&format!("merchant.{DEMO_MERCHANT}.token.list")),
            "_INBOX.gateway",
        ),
        (
            stack
                .app
                .subject(&format!("merchant.{DEMO_MERCHANT}.token.list")),
            "_INBOX.merchant_452740",
        ),
        (
            stack.app.subject("merchant.abc.token.list"),
            "_INBOX.merchant_abc",
        ),
    ];
    for (subject, inbox) in cases {
        let client = connect_with_inbox(&stack.nats.url(), inbox).await;
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subject.clone(), b"{}".to_vec().into()),
        )
        .await;
        assert!(!matches!(reply, Ok(Ok(_))), "{subject} answered on {inbox}");
    }
    let metrics = stack.app.metrics();
    assert!(
        nats_deputy::metric_sum(&metrics, "oneclick_replies_refused_total") >= 4,
        "{metrics}"
    );
}

/// The streams as main at 590047f created them: the command stream denied deletes only, the
/// event stream neither purge nor delete.
async fn create_old_streams(js: &jetstream::Context, prefix: &str) {
    let base = prefix.to_uppercase();
    js.create_stream(stream::Config {
        name: format!("{base}_CMD"),
        subjects: vec![format!("{prefix}.v1.cmd.>")],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        discard: stream::DiscardPolicy::New,
        deny_delete: true,
        ..Default::default()
    })
    .await
    .expect("old command stream");
    js.create_stream(stream::Config {
        name: format!("{base}_EVT"),
        subjects: vec![format!("{prefix}.v1.evt.>")],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(7 * 86_400),
        ..Default::default()
    })
    .await
    .expect("old event stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_created_by_the_old_version_deny_purge_and_delete_after_the_service_starts() {
    // The shipped config, so the update also proves the service user's JetStream rights suffice.
    let nats = NatsServer::start_shipped();
    let users = nats.users.clone().expect("shipped users");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = OneClick::prepare(dir.path(), &nats.url(), None);
    users.serve_as_shipped(&mut app, "oneclick");
    let service = users.service(&nats.url()).await;
    let gateway = users.gateway(&nats.url()).await;
    let js = jetstream::new(service.clone());
    create_old_streams(&js, "oneclick").await;
    // An event the operator had before the upgrade: kept.
    js.publish("oneclick.v1.evt.dlq.token_pay", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    for name in ["ONECLICK_CMD", "ONECLICK_EVT"] {
        let config = js
            .get_stream(name)
            .await
            .expect("stream")
            .cached_info()
            .config
            .clone();
        assert!(!config.deny_purge, "{name} starts the old way");
    }
    app.start(&gateway).await;
    for name in ["ONECLICK_CMD", "ONECLICK_EVT"] {
        let mut s = js.get_stream(name).await.expect("stream");
        let info = s.info().await.expect("info").clone();
        assert!(
            info.config.deny_purge && info.config.deny_delete,
            "{name}: {:?}",
            info.config
        );
    }
    let mut evt = js.get_stream("ONECLICK_EVT").await.expect("stream");
    assert_eq!(
        evt.info().await.expect("info").state.messages,
        1,
        "the old event is kept"
    );
    let log = app.log_text();
    assert!(
        log.contains("stream updated"),
        "the change is logged:\n{log}"
    );
    // The server itself now refuses a purge, even from a user the permissions would let through.
    let open = NatsServer::start();
    let open_js = jetstream::new(async_nats::connect(open.url()).await.expect("client"));
    create_old_streams(&open_js, "x").await;
    let mut old = open_js.get_stream("X_EVT").await.expect("stream");
    let mut flagged = old.info().await.expect("info").config.clone();
    flagged.deny_purge = true;
    flagged.deny_delete = true;
    open_js
        .update_stream(flagged)
        .await
        .expect("flags can be turned on");
    assert!(
        old.purge().await.is_err(),
        "a purge is refused by the stream"
    );
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_command_on_another_partition_or_kind_is_dead_lettered_with_1_5_and_not_applied()
{
    let stack = Stack::start().await;
    let customer = "part-1";
    let saved = stack
        .gw(
            "pay",
            merge(
                order("part-save", "1.00", customer),
                json!({"card": card("4111111111111111", "123")}),
            ),
        )
        .await;
    let token = saved["token"].as_str().expect("token").to_string();
    let own = fnv1a32(customer.as_bytes()) % 8;
    let js = jetstream::new(stack.client.clone());
    let mut dead = stack
        .client
        .subscribe(stack.app.subject("evt.dlq.>"))
        .await
        .expect("sub");
    stack.client.flush().await.expect("flush");
    let cases = [
        ("wrong-part", format!("cmd.{}.token_pay", (own + 1) % 8)),
        ("wrong-kind", format!("cmd.{own}.delete_card")),
    ];
    for (id, tail) in &cases {
        let body = json!({"command_id": id, "kind": "token_pay", "merchant_id": DEMO_MERCHANT,
                          "order_number": format!("o-{id}"), "order_amount": "2.00", "order_currency": "RUB",
                          "customer_number": customer, "token": token});
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", *id);
        js.publish_with_headers(
            stack.app.subject(tail),
            headers,
            serde_json::to_vec(&body).expect("json").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    }
    let mut letters = Vec::new();
    while letters.len() < cases.len() {
        let m = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .expect("a dead letter")
            .expect("sub open");
        letters.push(serde_json::from_slice::<Value>(&m.payload).expect("json"));
    }
    for letter in &letters {
        assert_eq!(letter["fault"]["faultcode"], 1, "{letter}");
        assert_eq!(letter["fault"]["faultstring"], 5, "{letter}");
        assert_eq!(letter["deliveries"], 1, "dead-lettered at once: {letter}");
    }
    for (id, _) in &cases {
        let state = stack
            .merchant("order.state", json!({"order_number": format!("o-{id}")}))
            .await;
        assert_eq!(
            fault_of(&state),
            Some((4, 5)),
            "{id} was not applied: {state}"
        );
    }
    // The same command on its own subject is applied.
    let body = json!({"command_id": "right", "kind": "token_pay", "merchant_id": DEMO_MERCHANT,
                      "order_number": "o-right", "order_amount": "2.00", "order_currency": "RUB",
                      "customer_number": customer, "token": token});
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "right");
    js.publish_with_headers(
        stack.app.subject(&format!("cmd.{own}.token_pay")),
        headers,
        serde_json::to_vec(&body).expect("json").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let mut approved = false;
    for _ in 0..50 {
        let state = stack
            .merchant("order.state", json!({"order_number": "o-right"}))
            .await;
        if fault_of(&state).is_none() {
            approved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(approved, "the control command was applied");
}
