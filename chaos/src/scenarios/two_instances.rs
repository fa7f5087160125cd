//! Scenario 4: two oneclick instances on one NATS and one PostgreSQL. Each trial pays 20 × 10.00
//! concurrently for one fresh customer whose day limit is 100.00 (R12), the requests spread over
//! both instances by the queue group. Proves: the database's row lock keeps the limit across
//! processes — trials over the limit 0, read back from the orders table, not just the replies.

use std::time::Duration;

use serde_json::json;

use crate::client::*;
use crate::report::{History, Report};
use crate::stack::{Stack, StackOptions};
use crate::Run;

const CONCURRENT: usize = 20;
const AMOUNT_MINOR: i64 = 1000;
const DAY_LIMIT_MINOR: i64 = 10_000;

pub async fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let trials = if run.short { 30 } else { 1000 };
    let history = History::create(&run.out.join("history.jsonl"))?;
    let stack = Stack::start(
        &run.out,
        StackOptions {
            instances: 2,
            ..Default::default()
        },
        |app| {
            app.admin(&[
                "merchant",
                "--id",
                &DEMO_MERCHANT.to_string(),
                "--limit",
                "RUB:100.00:1000.00",
            ])?;
            Ok(())
        },
    )
    .await?;
    let subject = stack.subject("gw.pay");
    let mut over_by_replies = 0i64;
    let mut approved_total = 0i64;
    let mut unanswered = 0i64;
    let mut other_outcomes = 0i64;
    for trial in 0..trials {
        let customer = format!("limit-{trial}");
        let replies = futures::future::join_all((0..CONCURRENT).map(|i| {
            let order_no = format!("l-{trial}-{i}");
            let body = merge(order_of(DEMO_MERCHANT, &order_no, "10.00", &customer), json!({"card": card("4111111111111111", "123", 12), "save_card": false}));
            let (client, subject, history, customer) = (&stack.client, &subject, &history, customer.clone());
            async move {
                history.record(json!({"op": "pay", "order": order_no, "customer": customer, "amount_minor": AMOUNT_MINOR}));
                let (reply, retries) = request_until_answered(client, subject, &body, Duration::from_secs(60)).await;
                history.record(json!({"ack": "pay", "order": order_no, "state": reply.as_ref().map(|r| r["order_state"].clone()), "code": reply.as_ref().map(|r| r["response_code"].clone()), "retries": retries}));
                reply
            }
        }))
        .await;
        let approved = replies
            .iter()
            .flatten()
            .filter(|r| r["order_state"] == "Approved")
            .count() as i64;
        unanswered += replies.iter().filter(|r| r.is_none()).count() as i64;
        other_outcomes += replies
            .iter()
            .flatten()
            .filter(|r| r["order_state"] != "Approved" && r["response_code"] != "AS105")
            .count() as i64;
        if approved * AMOUNT_MINOR > DAY_LIMIT_MINOR {
            over_by_replies += 1;
        }
        approved_total += approved;
        if trial % 100 == 99 {
            eprintln!("two-instances: {} trials", trial + 1);
        }
    }
    history.flush();
    stack.scrape();
    let mut sql = stack.sql()?;
    let over_in_db = sql.number(&format!(
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM (SELECT customer_id FROM orders WHERE counts_for_limits GROUP BY customer_id HAVING SUM(amount) > {DAY_LIMIT_MINOR}) t"
    ))?;
    let rows =
        sql.number("SELECT CAST(COUNT(*) AS TEXT) AS v FROM orders WHERE order_number LIKE 'l-%'")?;
    let per_instance: Vec<f64> = stack
        .apps
        .lock()
        .map(|a| {
            a.iter()
                .map(|x| x.counter("oneclick_requests_total"))
                .collect()
        })
        .unwrap_or_default();
    report.figure("trials", trials as i64);
    report.figure("payments attempted", (trials * CONCURRENT) as i64);
    report.figure("payments approved", approved_total);
    report.figure("requests per instance", format!("{per_instance:?}"));
    report.figure("order rows", rows);
    report.expect_eq("trials over the limit (replies)", over_by_replies, 0);
    report.expect_eq("customers over the limit (database)", over_in_db, 0);
    report.expect_eq("unanswered payments", unanswered, 0);
    report.expect_eq("outcomes other than Approved / AS105", other_outcomes, 0);
    report.expect_eq(
        "approved = trials × limit/amount (the limit is reached)",
        approved_total,
        trials as i64 * DAY_LIMIT_MINOR / AMOUNT_MINOR,
    );
    report.expect(
        "both instances took payments",
        per_instance.iter().all(|n| *n > 0.0),
        "> 0 each",
        format!("{per_instance:?}"),
    );
    Ok(())
}
