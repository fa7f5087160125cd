//! Short versions of the chaos scenarios that gate CI (docs/reliability.md): against the real
//! `oneclick` binary, a private nats-server and a fresh PostgreSQL database each.
//!
//! - 4: two oneclick instances, concurrent payments of one customer never exceed the day limit;
//! - 6: merchant retries (lost replies, concurrent copies) charge each order once, and a retry with
//!   a changed body is fault 4/4;
//! - 7: no PAN, CVC or their unkeyed SHA-256 in the database, the JetStream store or the logs;
//!   ciphertexts bound to their row and key, fresh nonces;
//! - 9: one merchant can do nothing to another merchant's customers, cards and orders; unknown
//!   JSON fields set nothing.
//!
//! The long versions (1,000 trials, 10,000 orders, 500 customers per merchant, kill/restart
//! faults) are `scripts/chaos/<scenario>` (the `oneclick-chaos` binary).

use oneclick_testkit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::chaos::*;
use support::nats::*;

const VISA: &str = "4111111111111111";

fn is_fault(reply: &Value) -> bool {
    reply.get("fault").is_some()
}

/// Saves a card for `customer` of `merchant` (an approved new-card payment); returns the token.
async fn save_card(
    c: &Cluster,
    merchant: i64,
    customer: &str,
    order_no: &str,
    pan: &str,
    cvc: &str,
) -> String {
    let body = merge(
        order_of(merchant, order_no, "1.00", customer),
        json!({"card": card(pan, cvc)}),
    );
    let paid = c.gw("pay", &body).await;
    assert_eq!(paid["card_saved"], true, "{paid}");
    paid["token"].as_str().expect("token").to_string()
}

// ---- scenario 4 --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_two_instances_never_let_concurrent_payments_of_one_customer_exceed_the_day_limit() {
    const TRIALS: usize = 30;
    const CONCURRENT: usize = 20;
    // Day limit 100.00, twenty payments of 10.00 = 200.00 per trial: at most ten may pass.
    let c = Cluster::start(2, |app| {
        app.admin(&[
            "merchant",
            "--id",
            &DEMO_MERCHANT.to_string(),
            "--limit",
            "RUB:100.00:1000.00",
        ]);
    })
    .await;
    let mut over = 0;
    let mut approved_total = 0;
    for trial in 0..TRIALS {
        let customer = format!("limit-{trial}");
        let replies: Vec<Value> = futures::future::join_all((0..CONCURRENT).map(|i| {
            let body = merge(
                order_of(DEMO_MERCHANT, &format!("l-{trial}-{i}"), "10.00", &customer),
                json!({"card": card(VISA, "123"), "save_card": false}),
            );
            let c = &c;
            async move { c.gw("pay", &body).await }
        }))
        .await;
        let approved = replies
            .iter()
            .filter(|r| r["order_state"] == "Approved")
            .count();
        let declined_105 = replies
            .iter()
            .filter(|r| r["response_code"] == "AS105")
            .count();
        assert_eq!(
            approved + declined_105,
            CONCURRENT,
            "every payment is approved or AS105: {replies:?}"
        );
        if approved * 1000 > 10_000 {
            over += 1;
        }
        approved_total += approved;
    }
    // What the database holds: no customer's counted turnover above the limit.
    let over_in_db = c.number(
        "SELECT COUNT(*) AS n FROM (SELECT customer_id FROM orders WHERE counts_for_limits \
         GROUP BY customer_id HAVING SUM(amount) > 10000) t",
    );
    let per_instance = c.metric_per_instance("oneclick_requests_total");
    assert_eq!(over, 0, "trials over the limit by the replies");
    assert_eq!(over_in_db, 0, "customers over the limit in the database");
    assert_eq!(
        approved_total,
        TRIALS * 10,
        "the limit is also reached, not just respected"
    );
    assert!(
        per_instance.iter().all(|n| *n > 0.0),
        "both instances took payments: {per_instance:?}"
    );
}

// ---- scenario 6 --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_merchant_retries_charge_each_order_once_and_a_changed_retry_is_an_idempotency_conflict()
{
    const ORDERS: usize = 300;
    const CUSTOMERS: usize = 20;
    let c = Cluster::start(1, |_| {}).await;
    let mut tokens = Vec::new();
    for i in 0..CUSTOMERS {
        tokens.push(
            save_card(
                &c,
                DEMO_MERCHANT,
                &format!("rt-{i}"),
                &format!("rt-save-{i}"),
                VISA,
                "123",
            )
            .await,
        );
    }
    let subject = c.subject(&format!("merchant.{DEMO_MERCHANT}.token.pay"));
    let body = |i: usize, amount: &str| {
        json!({"merchant": merchant_auth(), "order_number": format!("rt-o-{i}"), "order_amount": amount,
               "order_currency": "RUB", "token_type": 5,
               "payment_token": {"token": tokens[i % CUSTOMERS], "customer_number": format!("rt-{}", i % CUSTOMERS)}})
    };
    // Amounts: mostly approved, some declined (.51) and some in doubt (.13) by the simulator rules.
    let amount = |i: usize| format!("{}.{:02}", 1 + i % 7, [0, 13, 51, 20, 35][i % 5]);
    let results: Vec<(usize, Vec<Value>, Option<Value>)> = futures::stream::iter(0..ORDERS)
        .map(|i| {
            let (c, subject) = (&c, subject.clone());
            let first = body(i, &amount(i));
            let changed = body(i, "99.99");
            async move {
                let sends = 1 + i % 3;
                let mut replies = Vec::new();
                if i % 4 == 0 {
                    // Concurrent copies (a merchant's retry racing its first attempt).
                    replies = futures::future::join_all(
                        (0..sends).map(|_| request(&c.client, subject.clone(), &first)),
                    )
                    .await;
                } else {
                    for s in 0..sends {
                        if s == 0 && sends > 1 {
                            // The first reply is lost: it goes to an inbox of the merchant's
                            // that nobody reads (a foreign inbox would be refused unanswered).
                            let lost = format!(
                                "_INBOX.merchant_{DEMO_MERCHANT}.lost.{}",
                                uuid::Uuid::new_v4().simple()
                            );
                            c.client
                                .publish_with_reply(
                                    subject.clone(),
                                    lost,
                                    serde_json::to_vec(&first).expect("json").into(),
                                )
                                .await
                                .expect("publish");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        replies.push(request(&c.client, subject.clone(), &first).await);
                    }
                }
                let conflict = if i % 10 == 5 {
                    Some(request(&c.client, subject.clone(), &changed).await)
                } else {
                    None
                };
                (i, replies, conflict)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut approved_minor = 0i64;
    let mut approved = 0i64;
    for (i, replies, conflict) in &results {
        assert!(
            replies.iter().all(|r| !is_fault(r)),
            "order {i}: {replies:?}"
        );
        assert!(
            replies.windows(2).all(|w| w[0] == w[1]),
            "order {i}: every send gets the first result: {replies:?}"
        );
        if replies[0]["order_state"] == "Approved" {
            approved += 1;
            let a: f64 = replies[0]["order_amount"]
                .as_str()
                .expect("amount")
                .parse()
                .expect("amount");
            approved_minor += (a * 100.0).round() as i64;
        }
        if let Some(conflict) = conflict {
            assert_eq!(
                fault_of(conflict),
                Some((4, 4)),
                "order {i}: changed retry {conflict}"
            );
        }
    }
    let rows = c.number("SELECT COUNT(*) AS n FROM orders WHERE order_number LIKE 'rt-o-%'");
    let distinct = c.number(
        "SELECT COUNT(DISTINCT order_number) AS n FROM orders WHERE order_number LIKE 'rt-o-%'",
    );
    let db_approved = c.number(
        "SELECT COUNT(*) AS n FROM orders WHERE order_number LIKE 'rt-o-%' AND state = 'Approved'",
    );
    let db_minor = c.number("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM orders WHERE order_number LIKE 'rt-o-%' AND state = 'Approved'");
    // Each approved charge adds one to its card's success count (the save added one too).
    let successes = c.number("SELECT CAST(SUM(success_count) AS BIGINT) AS n FROM cards");
    assert_eq!(
        (rows, distinct),
        (ORDERS as i64, ORDERS as i64),
        "one order row per order"
    );
    assert_eq!(
        db_approved, approved,
        "approved orders in the database = approved replies"
    );
    assert_eq!(
        db_minor, approved_minor,
        "charged amount in the database = approved replies"
    );
    assert_eq!(
        successes,
        CUSTOMERS as i64 + approved,
        "one card charge per approved order"
    );
    assert!(
        approved > 0 && approved < ORDERS as i64,
        "a mix of outcomes"
    );
}

// ---- scenario 7 --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_no_card_data_in_database_jetstream_store_or_logs_and_ciphertexts_are_bound() {
    use oneclick_actors::crypto::{card_aad_for, Keyring, LocalKek, MasterKey};
    let c = Cluster::start(1, |_| {}).await;
    let app = &c.apps[0];
    let pans: Vec<String> = (0..12)
        .map(|n| test_pan(["41", "52", "22"][n as usize % 3], 7_301_000 + n * 7))
        .collect();
    let cvcs: Vec<String> = ["947", "863", "771", "658", "539", "482"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut tokens = Vec::new();
    // New-card payments with save (request-reply), a repeat with another CVC, registrations.
    for (i, pan) in pans.iter().enumerate().take(8) {
        tokens.push((
            format!("sw-{}", i % 4),
            save_card(
                &c,
                DEMO_MERCHANT,
                &format!("sw-{}", i % 4),
                &format!("sw-save-{i}"),
                pan,
                &cvcs[i % cvcs.len()],
            )
            .await,
        ));
    }
    let repeat = merge(
        order_of(DEMO_MERCHANT, "sw-save-0", "1.00", "sw-0"),
        json!({"card": card(&pans[0], &cvcs[5])}),
    );
    assert!(!is_fault(&c.gw("pay", &repeat).await));
    for (i, pan) in pans.iter().enumerate().skip(8).take(2) {
        let body = merge(
            order_of(DEMO_MERCHANT, &format!("sw-reg-{i}"), "0", "sw-reg"),
            json!({"card": card(pan, &cvcs[i % cvcs.len()])}),
        );
        assert_eq!(c.gw("register", &body).await["card_saved"], true);
    }
    // Saved-card payments with CVC, declined and in-doubt ones, a recurring initial payment.
    for (i, (customer, token)) in tokens.iter().enumerate() {
        let body = merge(
            order_of(
                DEMO_MERCHANT,
                &format!("sw-ps-{i}"),
                if i % 3 == 0 { "2.51" } else { "2.13" },
                customer,
            ),
            json!({"token": token, "cvc": cvcs[(i + 1) % cvcs.len()]}),
        );
        assert!(!is_fault(&c.gw("pay_saved", &body).await));
    }
    let recurring = json!({"merchant_id": DEMO_MERCHANT.to_string(), "order_number": "sw-rec", "order_amount": "5.00", "order_currency": "RUB",
        "card": card(&pans[10], &cvcs[0]), "recurring_indicator": "1", "recurring_min_amount": "1.00",
        "recurring_max_amount": "10.00", "recurring_period": "1", "recurring_max_date": "31.12.2030"});
    assert_eq!(c.gw("pay", &recurring).await["order_state"], "Approved");
    // Bad input carrying card data: each a fault, none may echo or log it.
    let bad = [
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-1", "1.00", "sw-0"),
            json!({"card": {"number": pans[11], "expire_month": "13", "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": cvcs[1]}}),
        ),
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-2", "1.00", "sw-0"),
            json!({"card": {"number": pans[11], "expire_month": "12", "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": 12345}}),
        ),
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-3", "1.00", "sw-0"),
            json!({"card": {"number": format!("{}0", pans[11]), "expire_month": "12", "expire_year": "2030", "holder": "I", "cvc": cvcs[2]}}),
        ),
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-4", "1.00", "sw-0"),
            json!({"card": card(&pans[11], &cvcs[3]), "signature": "AAAA"}),
        ),
    ];
    for body in &bad {
        let reply = c.gw("pay", body).await;
        assert!(is_fault(&reply), "{reply}");
    }
    let broken = format!(
        r#"{{"merchant_id":"{DEMO_MERCHANT}","card":{{"number":"{}","cvc":"{}""#,
        pans[11], cvcs[4]
    );
    assert!(is_fault(
        &request_raw(&c.client, c.subject("gw.pay"), broken.into_bytes()).await
    ));
    // Durable commands through the JetStream store: Token Pay and a deletion.
    let js = async_nats::jetstream::new(c.client.clone());
    for (i, (customer, token)) in tokens.iter().enumerate().take(4) {
        let kind = if i == 3 { "delete_card" } else { "token_pay" };
        let cmd = if kind == "token_pay" {
            json!({"command_id": format!("sw-cmd-{i}"), "kind": kind, "merchant_id": DEMO_MERCHANT, "order_number": format!("sw-tp-{i}"),
                   "order_amount": "3.00", "order_currency": "RUB", "customer_number": customer, "token": token})
        } else {
            json!({"command_id": format!("sw-cmd-{i}"), "kind": kind, "merchant_id": DEMO_MERCHANT, "customer_number": customer, "token": token})
        };
        let envelope: oneclick::wire::CommandEnvelope =
            serde_json::from_value(cmd.clone()).expect("command");
        let subject = envelope.subject(&oneclick::subjects::Subjects::new(&app.prefix), 8);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("sw-cmd-{i}").as_str());
        js.publish_with_headers(
            subject,
            headers,
            serde_json::to_vec(&cmd).expect("json").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    }
    // Wait until the commands are consumed (the work queue empties).
    let stream_name = format!("{}_CMD", app.prefix.to_uppercase());
    for _ in 0..100 {
        let mut stream = js.get_stream(&stream_name).await.expect("stream");
        if stream.info().await.expect("info").state.messages == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The sweep.
    let needles = needles(&pans, &cvcs);
    let mut haystacks = database_haystacks(&c);
    let rows_seen = haystacks.len();
    haystacks.extend(file_haystacks(
        c.nats.store.path(),
        "JetStream store",
        |_| false,
    ));
    haystacks.extend(file_haystacks(&app.dir, "oneclick dir (log, keys)", |_| {
        false
    }));
    assert!(
        rows_seen > 100,
        "the database was read ({rows_seen} values)"
    );
    assert!(
        app.log_text().contains("DEBUG") || app.log_text().len() > 1000,
        "the log is verbose enough to mean something"
    );
    let control = Haystack {
        place: "control: a request body of the run".into(),
        bytes: serde_json::to_vec(&repeat).expect("json"),
        numbers_only: false,
    };
    assert!(
        !sweep(&[control], &needles).is_empty(),
        "the sweep finds a PAN where there is one"
    );
    let found = sweep(&haystacks, &needles);
    assert!(found.is_empty(), "card data found: {found:?}");

    // Crypto: the run's ciphertexts are bound to their row and key.
    let kek = LocalKek::load_file(app.dir.join("keys.kek")).expect("the run's KEK");
    let keyring =
        Keyring::load_file_with(app.dir.join("keys.txt"), Some(&kek)).expect("the run's keys");
    // Each row with its associated data: AAD version, owner (customer id, number) and token.
    let rows = c.texts("SELECT CAST(k.aad_version AS TEXT) || ':' || CAST(k.customer_id AS TEXT) || ':' || k.token || ':' || CAST(k.key_version AS TEXT) || ':' || encode(k.pan_ciphertext, 'hex') || ':' || c.customer_number AS v FROM cards k JOIN customers c ON c.id = k.customer_id WHERE k.pan_ciphertext IS NOT NULL ORDER BY k.id LIMIT 2");
    let rows: Vec<(Vec<u8>, u32, Vec<u8>)> = rows
        .into_iter()
        .flatten()
        .map(|r| {
            let mut p = r.splitn(6, ':');
            let aad_version = p.next().expect("aad").parse().expect("aad");
            let customer_id = p.next().expect("customer").parse().expect("customer");
            let token = p.next().expect("token").to_string();
            let version = p.next().expect("version").parse().expect("version");
            let hexed = p.next().expect("blob");
            let blob = (0..hexed.len() / 2)
                .map(|i| u8::from_str_radix(&hexed[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            let number = p.next().expect("number");
            let aad = card_aad_for(aad_version, customer_id, number, &token).expect("aad");
            (aad, version, blob)
        })
        .collect();
    assert_eq!(rows.len(), 2);
    let opened = keyring
        .open(rows[0].1, &rows[0].2, &rows[0].0)
        .expect("a row opens with its own aad");
    assert!(
        pans.iter().any(|p| p.as_bytes() == &opened[..]),
        "and holds one of the run's PANs"
    );
    assert!(
        keyring.open(rows[1].1, &rows[0].2, &rows[1].0).is_err(),
        "ciphertext swapped between rows"
    );
    let mut flipped = rows[0].2.clone();
    flipped[14] ^= 0x01;
    assert!(
        keyring.open(rows[0].1, &flipped, &rows[0].0).is_err(),
        "a flipped bit"
    );
    let wrong = Keyring::new(
        vec![(rows[0].1, MasterKey::generate())],
        rows[0].1,
        MasterKey::generate(),
    )
    .expect("keyring");
    assert!(
        wrong.open(rows[0].1, &rows[0].2, &rows[0].0).is_err(),
        "a wrong key"
    );
    // Nonces: the full 10^6 is `scripts/chaos/card-sweep`; here 10^5.
    let mut nonces = std::collections::HashSet::new();
    for _ in 0..100_000 {
        let sealed = keyring
            .seal(b"4111111111111111", b"card:nonce-test")
            .expect("seal");
        assert!(
            nonces.insert(<[u8; 12]>::try_from(&sealed.blob[..12]).expect("nonce")),
            "repeated nonce"
        );
    }
}

// ---- scenario 9 --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_a_merchant_can_do_nothing_to_another_merchants_customers_and_extra_fields_set_nothing()
{
    const PER_MERCHANT: usize = 50;
    let c = Cluster::start(1, |app| {
        app.admin(&[
            "merchant",
            "--id",
            &OTHER_MERCHANT.to_string(),
            "--name",
            "Other",
            "--signature-key",
            DEMO_KEY_B64,
        ]);
        app.admin(&[
            "user",
            "--merchant",
            &OTHER_MERCHANT.to_string(),
            "--login",
            OTHER_LOGIN,
            "--password",
            OTHER_PASSWORD,
        ]);
    })
    .await;
    // Each merchant's customers, a saved card and an order each.
    let mut owned: BTreeMap<i64, Vec<(String, String, String)>> = BTreeMap::new();
    for m in [DEMO_MERCHANT, OTHER_MERCHANT] {
        for i in 0..PER_MERCHANT {
            let customer = format!("iso-{m}-{i}");
            let order_no = format!("iso-{m}-o{i}");
            let token = save_card(&c, m, &customer, &order_no, VISA, "123").await;
            owned
                .entry(m)
                .or_default()
                .push((customer, token, order_no));
        }
    }
    let snapshot = || {
        c.texts("SELECT CAST(t AS TEXT) AS v FROM (SELECT c.customer_number, c.deny, c.fraud, k.token, k.state, k.success_count FROM customers c JOIN cards k ON k.customer_id = c.id WHERE c.customer_number <> 'iso-new' ORDER BY k.token) t")
    };
    let before = snapshot();
    let orders_before = c.number("SELECT COUNT(*) AS n FROM orders");
    let all_tokens: BTreeSet<String> = owned
        .values()
        .flatten()
        .map(|(_, t, _)| t.clone())
        .collect();
    let mut attempts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut record = |op: &'static str, success: bool, reply: &Value| {
        let e = attempts.entry(op).or_default();
        e.0 += 1;
        if success {
            e.1 += 1;
            eprintln!("isolation breach: {op}: {reply}");
        }
    };
    for (attacker, victim) in [
        (OTHER_MERCHANT, DEMO_MERCHANT),
        (DEMO_MERCHANT, OTHER_MERCHANT),
    ] {
        let auth = auth_of(attacker);
        for (i, (customer, token, order_no)) in owned[&victim].iter().enumerate() {
            let r = c
                .merchant_as(
                    attacker,
                    auth.clone(),
                    "token.list",
                    json!({"customernumber": customer}),
                )
                .await;
            record(
                "token.list",
                r.to_string().contains(token.as_str())
                    || r.as_array().is_some_and(|a| !a.is_empty()),
                &r,
            );
            let r = c
                .merchant_as(
                    attacker,
                    auth.clone(),
                    "customers.list",
                    json!({"search": customer}),
                )
                .await;
            record(
                "customers.list",
                r.to_string().contains(token.as_str()) || r["total"].as_i64().unwrap_or(0) > 0,
                &r,
            );
            let r = c
                .merchant_as(
                    attacker,
                    auth.clone(),
                    "order.state",
                    json!({"order_number": order_no}),
                )
                .await;
            record("order.state", !is_fault(&r), &r);
            let r = c
                .merchant_as(attacker, auth.clone(), "token.pay", json!({"order_number": format!("atk-{attacker}-{i}"), "order_amount": "1.00", "order_currency": "RUB", "token_type": 5, "payment_token": {"token": token, "customer_number": customer}}))
                .await;
            record("token.pay", !is_fault(&r), &r);
            let r = c
                .merchant_as(
                    attacker,
                    auth.clone(),
                    "token.remove",
                    json!({"customernumber": customer, "token": token}),
                )
                .await;
            record("token.remove", !is_fault(&r), &r);
            // A status change names a customer number in the attacker's own union: it may be
            // accepted, but it must not touch the victim's customer (checked below).
            let r = c.merchant_as(attacker, auth.clone(), "customers.status", json!({"customernumber": customer, "status": if i % 2 == 0 { "fraud" } else { "leave" }})).await;
            record("customers.status (reply only)", false, &r);
            // The gateway surface, signed as the attacker.
            let r = c
                .gw(
                    "pay_saved",
                    &merge(
                        order_of(
                            attacker,
                            &format!("atk-ps-{attacker}-{i}"),
                            "1.00",
                            customer,
                        ),
                        json!({"token": token, "cvc": "123"}),
                    ),
                )
                .await;
            record("gw.pay_saved", !is_fault(&r), &r);
            let r = c.gw("delete_card", &json!({"merchant_id": attacker.to_string(), "customer_number": customer, "token": token})).await;
            record("gw.delete_card", !is_fault(&r), &r);
            let r = c
                .gw(
                    "offer",
                    &order_of(
                        attacker,
                        &format!("atk-of-{attacker}-{i}"),
                        "1.00",
                        customer,
                    ),
                )
                .await;
            record("gw.offer", r.to_string().contains(token.as_str()), &r);
            // The attacker's credentials on the victim's subject, and the victim's id in the body.
            let r = c
                .merchant_as(
                    victim,
                    auth.clone(),
                    "token.list",
                    json!({"customernumber": customer}),
                )
                .await;
            record("credentials on the victim's subject", !is_fault(&r), &r);
            let mut forged = auth.clone();
            forged["merchant_id"] = json!(victim.to_string());
            let r = c
                .merchant_as(
                    victim,
                    forged,
                    "token.list",
                    json!({"customernumber": customer}),
                )
                .await;
            record(
                "victim's merchant_id with the attacker's login",
                !is_fault(&r),
                &r,
            );
            // Unknown fields naming the victim: union, merchant, customer id, mode, need_cvc.
            let r = c
                .merchant_as(attacker, auth.clone(), "token.pay", json!({"order_number": format!("atk-x-{attacker}-{i}"), "order_amount": "1.00", "order_currency": "RUB", "token_type": 5,
                    "union_id": 1, "merchant_id": victim, "mode": "standard",
                    "payment_token": {"token": token, "customer_number": customer, "merchant_id": victim, "union_id": 1}}))
                .await;
            record("token.pay with victim fields", !is_fault(&r), &r);
            let r = c
                .merchant_as(attacker, auth.clone(), "token.list", json!({"customernumber": customer, "union_id": 1, "merchant_id": victim.to_string(), "customer": {"merchant_id": victim}}))
                .await;
            record(
                "token.list with victim fields",
                r.to_string().contains(token.as_str()),
                &r,
            );
        }
    }
    // need_cvc cannot be switched off by the payer: a saved-card payment without CVC stays refused.
    let (customer, token, _) = &owned[&DEMO_MERCHANT][0];
    let r = c.gw("pay_saved", &merge(order_of(DEMO_MERCHANT, "x-cvc", "1.00", customer), json!({"token": token, "need_cvc": false, "mode": "saved_cards_only", "merchant": {"need_cvc": false}}))).await;
    record("need_cvc=false in the body", !is_fault(&r), &r);
    assert_eq!(fault_of(&r), Some((4, 10)), "{r}");
    // A new card saved with a foreign union id / customer id lands in the payer's own union.
    let body = merge(
        order_of(DEMO_MERCHANT, "x-union", "1.00", "iso-new"),
        json!({"card": card(VISA, "123"), "union_id": 999, "customer_id": 1, "card_token": token}),
    );
    let r = c.gw("pay", &body).await;
    assert_eq!(r["card_saved"], true, "{r}");
    record(
        "pay with union_id/customer_id/card_token",
        r["token"] == json!(token),
        &r,
    );
    let union_of_new =
        c.number("SELECT c.union_id AS n FROM customers c WHERE c.customer_number = 'iso-new'");
    let union_of_demo = c.number(&format!(
        "SELECT union_id AS n FROM merchants WHERE id = {DEMO_MERCHANT}"
    ));
    assert_eq!(
        union_of_new, union_of_demo,
        "saved in the paying merchant's union"
    );

    let after = snapshot();
    let changed: Vec<_> = before
        .iter()
        .zip(after.iter())
        .filter(|(a, b)| a != b)
        .collect();
    let breaches: usize = attempts.values().map(|(_, s)| s).sum();
    let total: usize = attempts.values().map(|(n, _)| n).sum();
    eprintln!("isolation: {total} attempts, {breaches} successes: {attempts:?}");
    assert_eq!(breaches, 0, "{attempts:?}");
    assert!(
        changed.is_empty(),
        "the victims' customers and cards changed: {changed:?}"
    );
    // Only the two legitimate orders of this test were added (x-union; x-cvc was refused).
    assert_eq!(
        c.number("SELECT COUNT(*) AS n FROM orders") - orders_before,
        1,
        "no attacker order was stored"
    );
    assert!(all_tokens.len() == 2 * PER_MERCHANT, "tokens are unique");
}
