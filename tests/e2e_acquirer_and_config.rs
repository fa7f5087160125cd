//! End-to-end: the NATS acquirer connector against a small acquirer responder started by the
//! test; unions of two merchants over NATS; and configuration errors that name the bad key.

use oneclick_testkit as support;

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::nats::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_go_to_an_external_acquirer_over_nats_and_silence_is_in_doubt() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("client");
    let acquirer_subject = format!("acq{}.authorize", free_port());
    // The acquiring host: approves everything except amount 66.00 (declined) and 77.00 (no answer).
    let mut sub = client
        .subscribe(acquirer_subject.clone())
        .await
        .expect("subscribe");
    let responder = client.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let req: Value = serde_json::from_slice(&msg.payload).expect("acquirer request json");
            seen2.lock().expect("lock").push(req.clone());
            let reply = match req["amount_minor"].as_i64() {
                Some(6600) => json!({"state": "declined", "response_code": "AS100"}),
                Some(7700) => continue,
                _ => {
                    json!({"state": "approved", "response_code": "AS000", "network_tx_id": "NTX1", "approval_code": "123456"})
                }
            };
            if let Some(reply_to) = msg.reply {
                let _ = responder
                    .publish(reply_to, serde_json::to_vec(&reply).expect("json").into())
                    .await;
            }
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = OneClick::prepare(dir.path(), &nats.url(), None);
    app.set_env("ONECLICK__ACQUIRER__KIND", "nats");
    app.set_env("ONECLICK__ACQUIRER__NATS_SUBJECT", &acquirer_subject);
    app.set_env("ONECLICK__ACQUIRER__TIMEOUT_MS", "500");
    app.start(&client).await;
    let pay = |order_no: &str, amount: &str| {
        merge(
            order(order_no, amount, "acq-1"),
            json!({"card": card("5555555555554444", "123")}),
        )
    };
    let gw = app.subject("gw.pay");
    let approved = request(&client, gw.clone(), &pay("a-1", "10.00")).await;
    assert_eq!(approved["order_state"], "Approved", "{approved}");
    let declined = request(&client, gw.clone(), &pay("a-2", "66.00")).await;
    assert_eq!(declined["order_state"], "Declined");
    assert_eq!(declined["response_code"], "AS100");
    let silent = request(&client, gw.clone(), &pay("a-3", "77.00")).await;
    assert_eq!(
        silent["order_state"], "Timeout",
        "no answer is in doubt, never a decline: {silent}"
    );
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0]["kind"], "purchase");
    assert_eq!(
        requests[0]["pan"], "5555555555554444",
        "the acquirer gets the card"
    );
    assert_eq!(requests[0]["cvc"], "123");
    assert!(
        !app.log_text().contains("5555555555554444"),
        "but the log does not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_merchants_in_one_union_share_a_customer_and_its_cards() {
    let stack = Stack::start().await;
    let paid = stack
        .gw(
            "pay",
            merge(
                order("u-1", "10.00", "shared-7"),
                json!({"card": card("4111111111111111", "123")}),
            ),
        )
        .await;
    let token = paid["token"].as_str().expect("saved").to_string();
    stack.app.admin(&[
        "merchant",
        "--id",
        "452741",
        "--name",
        "Sister shop",
        "--signature-key",
        DEMO_KEY_B64,
    ]);
    stack.app.admin(&[
        "user",
        "--merchant",
        "452741",
        "--login",
        "sister",
        "--password",
        "sister-password",
    ]);
    let union = stack
        .app
        .admin(&[
            "union",
            "create",
            "--kind",
            "legal_entity",
            "--name",
            "Group",
        ])
        .trim()
        .to_string();
    stack
        .app
        .admin(&["union", "join", "--merchant", "452739", "--union", &union]);
    stack
        .app
        .admin(&["union", "join", "--merchant", "452741", "--union", &union]);
    // Merchant settings are cached for up to merchant_cache_ms (1 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let body = json!({"merchant": {"merchant_id": "452741", "login": "sister", "password": "sister-password"}, "customernumber": "shared-7"});
    let list = request(
        &stack.client,
        stack.app.subject("merchant.452741.token.list"),
        &body,
    )
    .await;
    assert_eq!(
        list[0]["token"],
        token.as_str(),
        "the sister merchant sees the shared customer's card: {list}"
    );
}

#[test]
fn a_bad_setting_is_refused_at_start_naming_its_key() {
    let out = Command::new(bin())
        .args(["admin", "migrate"])
        .env("ONECLICK__NATS__PARTITIONS", "0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "configuration errors exit 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nats.partitions"), "{stderr}");
    let out = Command::new(bin())
        .args(["serve"])
        .env("ONECLICK__DATABASE__URL", "mysql://x/y")
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database.url"), "{stderr}");
}
