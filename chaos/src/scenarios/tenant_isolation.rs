//! Scenario 9: tenant isolation (R17). Two merchants in their own unions, N customers each with a
//! saved card and an order. Every merchant operation is attempted by each merchant on the other's
//! customers, tokens and orders — token list, customers list, order state, Token Pay (request-reply
//! and durable), token removal (merchant and gateway), status change, saved-card payment, offer —
//! plus the attacker's credentials on the victim's subject, and bodies with extra fields naming the
//! victim (`union_id`, `merchant_id` inside other objects, `mode`, `need_cvc`, `customer_id`).
//! Proves: 0 successes, and the victims' customers, cards and orders are unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::*;
use crate::report::{History, Report};
use crate::stack::{Stack, StackOptions};
use crate::Run;

pub async fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let per_merchant = if run.short { 50 } else { 500 };
    let history = History::create(&run.out.join("history.jsonl"))?;
    let stack = Stack::start(&run.out, StackOptions::default(), |app| {
        app.admin(&[
            "merchant",
            "--id",
            &OTHER_MERCHANT.to_string(),
            "--name",
            "Other",
            "--signature-key",
            DEMO_KEY_B64,
        ])?;
        app.admin(&[
            "user",
            "--merchant",
            &OTHER_MERCHANT.to_string(),
            "--login",
            OTHER_LOGIN,
            "--password",
            OTHER_PASSWORD,
        ])?;
        Ok(())
    })
    .await?;
    let ask = |subject: String, body: Value| {
        let client = stack.client.clone();
        async move {
            request(&client, &subject, &body, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| json!({"no_reply": format!("{e:?}")}))
        }
    };
    let merchant = |m: i64, endpoint: &str| stack.subject(&format!("merchant.{m}.{endpoint}"));
    let mut owned: BTreeMap<i64, Vec<(String, String, String)>> = BTreeMap::new();
    for m in [DEMO_MERCHANT, OTHER_MERCHANT] {
        let rows = futures::future::join_all((0..per_merchant).map(|i| {
            let customer = format!("iso-{m}-{i}");
            let order_no = format!("iso-{m}-o{i}");
            let body = merge(
                order_of(m, &order_no, "1.00", &customer),
                json!({"card": card("4111111111111111", "123", 12)}),
            );
            let ask = &ask;
            let subject = stack.subject("gw.pay");
            async move {
                let r = ask(subject, body).await;
                (
                    customer,
                    r["token"].as_str().unwrap_or_default().to_string(),
                    order_no,
                )
            }
        }))
        .await;
        anyhow::ensure!(
            rows.iter().all(|r| !r.1.is_empty()),
            "every setup card was saved"
        );
        owned.insert(m, rows);
    }
    let mut sql = stack.sql()?;
    let snapshot_sql = "SELECT CAST(t AS TEXT) AS v FROM (SELECT c.union_id, c.customer_number, c.deny, c.fraud, k.token, k.state, k.success_count, k.key_version, \
                        encode(k.pan_ciphertext, 'hex') AS ct FROM customers c JOIN cards k ON k.customer_id = c.id WHERE c.customer_number LIKE 'iso-%' ORDER BY k.token) t";
    let before = sql.texts(snapshot_sql)?;
    let orders_before = sql.texts("SELECT CAST(t AS TEXT) AS v FROM (SELECT merchant_id, order_number, state, amount FROM orders ORDER BY id) t")?;
    let merchants_before =
        sql.texts("SELECT CAST(t AS TEXT) AS v FROM (SELECT * FROM merchants ORDER BY id) t")?;

    let mut attempts: BTreeMap<&'static str, (i64, i64)> = BTreeMap::new();
    let mut record = |op: &'static str, breach: bool, reply: &Value| {
        let e = attempts.entry(op).or_default();
        e.0 += 1;
        if breach {
            e.1 += 1;
            history.record(json!({"breach": op, "reply": reply}));
        }
    };
    let mut durable = Vec::new();
    for (attacker, victim) in [
        (OTHER_MERCHANT, DEMO_MERCHANT),
        (DEMO_MERCHANT, OTHER_MERCHANT),
    ] {
        let auth = auth_of(attacker);
        for (i, (customer, token, order_no)) in owned[&victim].iter().enumerate() {
            history.record(json!({"op": "attack", "attacker": attacker, "victim": victim, "customer": customer}));
            let with_auth = |b: Value| merge(json!({"merchant": auth.clone()}), b);
            let r = ask(
                merchant(attacker, "token.list"),
                with_auth(json!({"customernumber": customer})),
            )
            .await;
            record(
                "token.list",
                r.to_string().contains(token.as_str())
                    || r.as_array().is_some_and(|a| !a.is_empty()),
                &r,
            );
            let r = ask(
                merchant(attacker, "customers.list"),
                with_auth(json!({"search": customer})),
            )
            .await;
            record(
                "customers.list",
                r.to_string().contains(token.as_str()) || r["total"].as_i64().unwrap_or(0) > 0,
                &r,
            );
            let r = ask(
                merchant(attacker, "order.state"),
                with_auth(json!({"order_number": order_no})),
            )
            .await;
            record("order.state", !is_fault(&r), &r);
            let r = ask(merchant(attacker, "token.pay"), with_auth(json!({"order_number": format!("atk-{attacker}-{i}"), "order_amount": "1.00", "order_currency": "RUB", "token_type": 5, "payment_token": {"token": token, "customer_number": customer}}))).await;
            record("token.pay", !is_fault(&r), &r);
            let r = ask(
                merchant(attacker, "token.remove"),
                with_auth(json!({"customernumber": customer, "token": token})),
            )
            .await;
            record("token.remove", !is_fault(&r), &r);
            // Names a customer number of the attacker's own union: may be accepted, must not touch
            // the victim's customer (the snapshot comparison below is the check).
            let r = ask(merchant(attacker, "customers.status"), with_auth(json!({"customernumber": customer, "status": (["fraud", "leave", "deny"][i % 3])}))).await;
            record(
                "customers.status (effect checked in the database)",
                false,
                &r,
            );
            let r = ask(
                stack.subject("gw.pay_saved"),
                merge(
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
            let r = ask(stack.subject("gw.delete_card"), json!({"merchant_id": attacker.to_string(), "customer_number": customer, "token": token})).await;
            record("gw.delete_card", !is_fault(&r), &r);
            let r = ask(
                stack.subject("gw.offer"),
                order_of(
                    attacker,
                    &format!("atk-of-{attacker}-{i}"),
                    "1.00",
                    customer,
                ),
            )
            .await;
            record("gw.offer", r.to_string().contains(token.as_str()), &r);
            let r = ask(
                merchant(victim, "token.list"),
                with_auth(json!({"customernumber": customer})),
            )
            .await;
            record(
                "attacker's credentials on the victim's subject",
                !is_fault(&r),
                &r,
            );
            let mut forged = auth.clone();
            forged["merchant_id"] = json!(victim.to_string());
            let r = ask(
                merchant(victim, "token.list"),
                json!({"merchant": forged, "customernumber": customer}),
            )
            .await;
            record(
                "victim's merchant_id with the attacker's login",
                !is_fault(&r),
                &r,
            );
            let r = ask(merchant(attacker, "token.pay"), with_auth(json!({"order_number": format!("atk-x-{attacker}-{i}"), "order_amount": "1.00", "order_currency": "RUB", "token_type": 5,
                "union_id": 1, "merchant_id": victim, "mode": "standard", "customer_id": 1,
                "payment_token": {"token": token, "customer_number": customer, "merchant_id": victim, "union_id": 1}}))).await;
            record("token.pay with victim fields", !is_fault(&r), &r);
            let r = ask(merchant(attacker, "token.list"), with_auth(json!({"customernumber": customer, "union_id": 1, "merchant_id": victim.to_string(), "customer": {"merchant_id": victim}}))).await;
            record(
                "token.list with victim fields",
                r.to_string().contains(token.as_str()),
                &r,
            );
            // Durable: Token Pay and deletion published as the attacker.
            for (kind, cmd) in [
                (
                    "token_pay",
                    json!({"command_id": format!("atk-c-{attacker}-{i}"), "kind": "token_pay", "merchant_id": attacker, "order_number": format!("atk-c-{attacker}-{i}"),
                                     "order_amount": "1.00", "order_currency": "RUB", "customer_number": customer, "token": token, "union_id": 1}),
                ),
                (
                    "delete_card",
                    json!({"command_id": format!("atk-d-{attacker}-{i}"), "kind": "delete_card", "merchant_id": attacker, "customer_number": customer, "token": token, "merchant": {"merchant_id": victim}}),
                ),
            ] {
                let subject = command_subject(&stack.prefix, &cmd)?;
                let id = cmd["command_id"].as_str().unwrap_or_default().to_string();
                publish_until_acked(
                    &stack.js,
                    &subject,
                    &id,
                    &serde_json::to_vec(&cmd)?,
                    Duration::from_secs(30),
                )
                .await;
                durable.push((kind, id));
            }
        }
    }
    // need_cvc cannot be switched off by the payer.
    let (customer, token, _) = &owned[&DEMO_MERCHANT][0];
    let r = ask(stack.subject("gw.pay_saved"), merge(order_of(DEMO_MERCHANT, "x-cvc", "1.00", customer), json!({"token": token, "need_cvc": false, "mode": "saved_cards_only", "merchant": {"need_cvc": false}}))).await;
    record(
        "pay_saved without CVC, need_cvc=false in the body",
        fault_of(&r) != Some((4, 10)),
        &r,
    );
    // Durable events: every attack command ended in a fault event.
    for _ in 0..300 {
        if pending_commands(&stack.js, &stack.prefix).await == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = read_events(&stack.js, &stack.prefix).await?;
    let by_id: BTreeMap<String, Value> = events
        .into_iter()
        .filter_map(|(_, e)| Some((e["command_id"].as_str()?.to_string(), e)))
        .collect();
    for (kind, id) in &durable {
        let e = by_id.get(id).cloned().unwrap_or(Value::Null);
        let name = if *kind == "token_pay" {
            "durable token_pay"
        } else {
            "durable delete_card"
        };
        record(name, e["ok"] == true || e.is_null(), &e);
    }
    history.flush();

    let after = sql.texts(snapshot_sql)?;
    let orders_after = sql.texts("SELECT CAST(t AS TEXT) AS v FROM (SELECT merchant_id, order_number, state, amount FROM orders ORDER BY id) t")?;
    let merchants_after =
        sql.texts("SELECT CAST(t AS TEXT) AS v FROM (SELECT * FROM merchants ORDER BY id) t")?;
    let changed = before
        .iter()
        .zip(after.iter())
        .filter(|(a, b)| a != b)
        .count()
        + before.len().abs_diff(after.len());
    let new_orders = orders_after.len() as i64 - orders_before.len() as i64;
    let orders_changed = orders_before
        .iter()
        .zip(orders_after.iter())
        .filter(|(a, b)| a != b)
        .count();
    let total: i64 = attempts.values().map(|(n, _)| n).sum();
    let breaches: i64 = attempts.values().map(|(_, b)| b).sum();
    report.figure("customers per merchant", per_merchant as i64);
    report.figure("attempts", total);
    for (op, (n, b)) in &attempts {
        report.figure(&format!("  {op}"), format!("{n} attempts, {b} successes"));
    }
    report.expect_eq("successes on the other merchant's data", breaches, 0);
    report.expect_eq("victims' customers/cards changed", changed as i64, 0);
    report.expect_eq("orders stored by attacks", new_orders, 0);
    report.expect_eq("existing orders changed", orders_changed as i64, 0);
    report.expect(
        "merchant settings unchanged by extra fields",
        merchants_before == merchants_after,
        "unchanged",
        merchants_before == merchants_after,
    );
    Ok(())
}
