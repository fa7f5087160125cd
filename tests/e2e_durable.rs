//! End-to-end: the durable JetStream path. Duplicate publishes yield one effect and one event;
//! a command whose processing crashes the process before commit is redelivered after a restart
//! and applied exactly once; a recurring charge flows through the command stream.

use oneclick_testkit as support;

use std::time::Duration;

use async_nats::jetstream;
use diesel::{Connection as _, RunQueryDsl as _};
use futures::StreamExt;
use oneclick::subjects::Subjects;
use oneclick::wire::CommandEnvelope;
use serde_json::{json, Value};
use support::nats::*;

const VISA: &str = "4111111111111111";

async fn publish(client: &async_nats::Client, prefix: &str, msg_id: &str, command: &Value) {
    let envelope: CommandEnvelope =
        serde_json::from_value(command.clone()).expect("a valid command");
    let subject = envelope.subject(&Subjects::new(prefix), 8);
    let js = jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(
        subject,
        headers,
        serde_json::to_vec(command).expect("json").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
}

/// All events of the events stream, in order.
async fn events(client: &async_nats::Client, prefix: &str) -> Vec<Value> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(format!("{}_EVT", prefix.to_uppercase()))
        .await
        .expect("event stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        out.push(serde_json::from_slice(&m.payload).expect("event json"));
    }
    out
}

async fn wait_events(client: &async_nats::Client, prefix: &str, n: usize) -> Vec<Value> {
    for _ in 0..60 {
        let e = events(client, prefix).await;
        if e.len() >= n {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    events(client, prefix).await
}

async fn saved_token(stack: &Stack, customer: &str) -> String {
    let paid = stack
        .gw(
            "pay",
            merge(
                order(&format!("save-{customer}"), "1.00", customer),
                json!({"card": card(VISA, "123")}),
            ),
        )
        .await;
    paid["token"].as_str().expect("saved").to_string()
}

fn token_pay(command_id: &str, order_no: &str, customer: &str, token: &str) -> Value {
    json!({"command_id": command_id, "kind": "token_pay", "merchant_id": DEMO_MERCHANT,
           "order_number": order_no, "order_amount": "12.00", "order_currency": "RUB",
           "customer_number": customer, "token": token})
}

async fn success_count(stack: &Stack, customer: &str) -> i64 {
    let page = stack
        .merchant("customers.list", json!({"search": customer}))
        .await;
    page["customers"][0]["cards"][0]["success_count"]
        .as_i64()
        .unwrap_or_else(|| panic!("{page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_published_three_times_has_one_effect_and_one_event() {
    let stack = Stack::start().await;
    let token = saved_token(&stack, "dur-1").await;
    let command = token_pay("cmd-1", "tp-dur-1", "dur-1", &token);
    for _ in 0..3 {
        publish(&stack.client, &stack.app.prefix, "cmd-1", &command).await;
    }
    // A late re-publish with another message id (after the duplicate window): the engine's
    // idempotency answers it with the stored result.
    publish(&stack.client, &stack.app.prefix, "cmd-1-late", &command).await;
    let events = wait_events(&stack.client, &stack.app.prefix, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events_after = wait_events(&stack.client, &stack.app.prefix, 1).await;
    assert_eq!(events_after.len(), 1, "one event: {events_after:?}");
    assert_eq!(events[0]["ok"], true, "{events:?}");
    assert_eq!(events[0]["result"]["order_state"], "Approved");
    assert_eq!(
        success_count(&stack, "dur-1").await,
        2,
        "saved once + charged once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_commit_is_redelivered_and_applied_once() {
    let mut stack = Stack::start().await;
    let token = saved_token(&stack, "dur-2").await;
    // Restart with the crash hook armed for this command's first delivery.
    stack.app.terminate();
    stack
        .app
        .set_env("ONECLICK_TEST_CRASH_BEFORE_COMMIT", "cmd-crash");
    stack.app.start(&stack.client).await;
    publish(
        &stack.client,
        &stack.app.prefix,
        "cmd-crash",
        &token_pay("cmd-crash", "tp-crash", "dur-2", &token),
    )
    .await;
    assert!(
        stack.app.wait_exit(Duration::from_secs(10)),
        "the process crashed on the first delivery"
    );
    assert!(stack.app.log_text().contains("aborting before commit"));
    stack.app.start(&stack.client).await;
    let events = wait_events(&stack.client, &stack.app.prefix, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["command_id"], "cmd-crash");
    assert_eq!(events[0]["result"]["order_state"], "Approved");
    assert_eq!(
        success_count(&stack, "dur-2").await,
        2,
        "applied exactly once"
    );
    let metrics = stack.app.metrics();
    assert!(
        metrics.contains("oneclick_jetstream_redeliveries_total{kind=\"token_pay\"} 1"),
        "the redelivery is counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurring_charges_flow_through_the_command_stream() {
    let stack = Stack::start().await;
    let initial = json!({
        "merchant_id": DEMO_MERCHANT.to_string(), "order_number": "rec-1", "order_amount": "100.00",
        "order_currency": "RUB", "card": card(VISA, "123"),
        "recurring_indicator": "1", "recurring_min_amount": "50.00", "recurring_max_amount": "150.00",
        "recurring_period": "30", "recurring_max_date": "31.12.2030",
    });
    let first = stack.gw("pay", initial).await;
    assert_eq!(first["order_state"], "Approved", "R15 initial: {first}");
    let charge = |id: &str, order_no: &str, amount: &str| {
        json!({"command_id": id, "kind": "recurring_charge", "merchant_id": DEMO_MERCHANT,
               "initial_order_number": "rec-1", "order_number": order_no, "order_amount": amount, "order_currency": "RUB"})
    };
    // Too soon: the initial payment starts the 30-day period.
    publish(
        &stack.client,
        &stack.app.prefix,
        "rc-0",
        &charge("rc-0", "rec-1-c0", "120.00"),
    )
    .await;
    let events = wait_events(&stack.client, &stack.app.prefix, 1).await;
    assert_eq!(events[0]["fault"]["faultstring"], 7, "{events:?}");
    // A period later (moved back in the vault, as time would).
    let db = stack.dir.path().join("oneclick.db");
    let mut conn = diesel::SqliteConnection::establish(&db.display().to_string()).expect("sqlite");
    diesel::sql_query("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'")
        .execute(&mut conn)
        .expect("update");
    publish(
        &stack.client,
        &stack.app.prefix,
        "rc-1",
        &charge("rc-1", "rec-1-c1", "120.00"),
    )
    .await;
    publish(
        &stack.client,
        &stack.app.prefix,
        "rc-2",
        &charge("rc-2", "rec-1-c2", "200.00"),
    )
    .await;
    let events = wait_events(&stack.client, &stack.app.prefix, 3).await;
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["command_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id}: {events:?}"))
    };
    assert_eq!(by_id("rc-1")["result"]["order_state"], "Approved");
    let refused = by_id("rc-2");
    assert_eq!(refused["ok"], false, "above the agreed maximum: {refused}");
    assert_eq!(refused["fault"]["faultcode"], 4);
    assert_eq!(refused["fault"]["faultstring"], 7);
}
