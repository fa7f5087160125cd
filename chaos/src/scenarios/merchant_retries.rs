//! Scenario 6: merchant retries. Token Pay orders over request-reply, each sent 1–3 times: some
//! retried after the first reply was lost (sent to an inbox nobody reads), some sent as concurrent
//! copies; one in ten is then retried with a changed amount. Proves R16: exactly one order row
//! and one card charge per order, every send answered with the first result, and a changed retry
//! refused with IdempotencyConflict (faultcode 4, faultstring 4).

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::client::*;
use crate::report::{History, Report};
use crate::stack::{Stack, StackOptions};
use crate::Run;

const CUSTOMERS: usize = 50;

/// (order index, replies, the changed retry's reply, replies lost on purpose, sends unanswered).
type Outcome = (usize, Vec<Value>, Option<Value>, u64, u64);

pub async fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let orders = if run.short { 300 } else { 10_000 };
    let history = History::create(&run.out.join("history.jsonl"))?;
    let stack = Stack::start(&run.out, StackOptions::default(), |_| Ok(())).await?;
    let pay = stack.subject("gw.pay");
    let mut tokens = Vec::new();
    for i in 0..CUSTOMERS {
        let body = merge(
            order_of(
                DEMO_MERCHANT,
                &format!("rt-save-{i}"),
                "1.00",
                &format!("rt-{i}"),
            ),
            json!({"card": card("4111111111111111", "123", 12)}),
        );
        let reply = request(&stack.client, &pay, &body, Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("save: {e:?}"))?;
        tokens.push(
            reply["token"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("no token: {reply}"))?
                .to_string(),
        );
    }
    let subject = stack.subject(&format!("merchant.{DEMO_MERCHANT}.token.pay"));
    let body = |i: usize, amount: &str| {
        json!({"merchant": auth_of(DEMO_MERCHANT), "order_number": format!("rt-o-{i}"), "order_amount": amount,
               "order_currency": "RUB", "token_type": 5,
               "payment_token": {"token": tokens[i % CUSTOMERS], "customer_number": format!("rt-{}", i % CUSTOMERS)}})
    };
    // Mostly approved; .51 declines and .13 times out (in doubt) by the simulator's rules.
    let amount = |i: usize| format!("{}.{:02}", 1 + i % 7, [0, 13, 51, 20, 35][i % 5]);
    let results: Vec<Outcome> = futures::stream::iter(0..orders)
        .map(|i| {
            let (stack, subject, history) = (&stack, subject.clone(), &history);
            let first = body(i, &amount(i));
            let changed = body(i, "99.99");
            async move {
                let sends = 1 + i % 3;
                let concurrent = i % 4 == 0;
                let mut replies = Vec::new();
                let mut lost = 0;
                let mut unanswered = 0;
                history.record(json!({"op": "token_pay", "order": format!("rt-o-{i}"), "sends": sends, "concurrent": concurrent}));
                if concurrent {
                    let got = futures::future::join_all((0..sends).map(|_| request(&stack.client, &subject, &first, Duration::from_secs(10)))).await;
                    for g in got {
                        match g {
                            Ok(r) => replies.push(r),
                            Err(_) => unanswered += 1,
                        }
                    }
                } else {
                    for s in 0..sends {
                        if s == 0 && sends > 1 {
                            let inbox = stack.client.new_inbox();
                            let _ = stack.client.publish_with_reply(subject.clone(), inbox, serde_json::to_vec(&first).unwrap_or_default().into()).await;
                            lost += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        match request(&stack.client, &subject, &first, Duration::from_secs(10)).await {
                            Ok(r) => replies.push(r),
                            Err(_) => unanswered += 1,
                        }
                    }
                }
                let conflict = if i % 10 == 5 { request(&stack.client, &subject, &changed, Duration::from_secs(10)).await.ok() } else { None };
                history.record(json!({"ack": "token_pay", "order": format!("rt-o-{i}"), "replies": replies.len(), "lost_replies": lost,
                                      "state": replies.first().map(|r| r["order_state"].clone()), "conflict": conflict.as_ref().and_then(fault_of)}));
                (i, replies, conflict, lost, unanswered)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    history.flush();
    let (
        mut sends,
        mut lost,
        mut unanswered,
        mut faults,
        mut differing,
        mut conflicts_ok,
        mut conflicts,
    ) = (0u64, 0u64, 0u64, 0i64, 0i64, 0i64, 0i64);
    let (mut approved, mut approved_minor) = (0i64, 0i64);
    for (i, replies, conflict, l, u) in &results {
        sends += (1 + i % 3) as u64;
        lost += l;
        unanswered += u;
        faults += replies.iter().filter(|r| is_fault(r)).count() as i64;
        if replies.windows(2).any(|w| w[0] != w[1]) {
            differing += 1;
        }
        if let Some(r) = replies.first() {
            if r["order_state"] == "Approved" {
                approved += 1;
                approved_minor += oneclick_actors::domain::Amount::parse(
                    r["order_amount"].as_str().unwrap_or("0"),
                )
                .map(|a| a.minor())
                .unwrap_or(0);
            }
        }
        if i % 10 == 5 {
            conflicts += 1;
            if conflict.as_ref().and_then(fault_of) == Some((4, 4)) {
                conflicts_ok += 1;
            }
        }
    }
    let mut sql = stack.sql()?;
    let rows = sql.number(
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM orders WHERE order_number LIKE 'rt-o-%'",
    )?;
    let distinct = sql.number("SELECT CAST(COUNT(DISTINCT order_number) AS TEXT) AS v FROM orders WHERE order_number LIKE 'rt-o-%'")?;
    let db_approved = sql.number("SELECT CAST(COUNT(*) AS TEXT) AS v FROM orders WHERE order_number LIKE 'rt-o-%' AND state = 'Approved'")?;
    let db_minor = sql.number("SELECT CAST(COALESCE(SUM(amount), 0) AS TEXT) AS v FROM orders WHERE order_number LIKE 'rt-o-%' AND state = 'Approved'")?;
    let successes = sql.number("SELECT CAST(SUM(success_count) AS TEXT) AS v FROM cards")?;
    report.figure("orders", orders as i64);
    report.figure("sends", sends as i64);
    report.figure("replies deliberately lost", lost as i64);
    report.figure("approved orders", approved);
    report.figure("changed-body retries", conflicts);
    report.expect_eq(
        "lost (an order without its row)",
        orders as i64 - distinct,
        0,
    );
    report.expect_eq("duplicated order rows", rows - distinct, 0);
    report.expect_eq(
        "duplicated card charges (success_count − approved − saves)",
        successes - approved - CUSTOMERS as i64,
        0,
    );
    report.expect_eq(
        "approved in the database − approved replies",
        db_approved - approved,
        0,
    );
    report.expect_eq(
        "charged amount in the database − approved replies (minor)",
        db_minor - approved_minor,
        0,
    );
    report.expect_eq("orders whose sends got different answers", differing, 0);
    report.expect_eq("faults on a plain retry", faults, 0);
    report.expect_eq("unanswered sends", unanswered as i64, 0);
    report.expect_eq("changed retries refused with 4/4", conflicts_ok, conflicts);
    Ok(())
}
