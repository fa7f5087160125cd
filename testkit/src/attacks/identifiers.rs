//! Hostile identifiers (security issue 12, finding 8): a gateway (or a merchant who signs them)
//! sends customer and order numbers holding NUL, a bidi override, full-width look-alikes, zero-width
//! characters or only whitespace. Before the fix SQLite stored them and PostgreSQL answered NUL
//! with an internal error and an ERROR log, so the two backends disagreed.
//!
//! The attack runs the real binary over NATS on the given backend and sends a signed new-card
//! payment for each hostile value, as customer number and as order number. It succeeds when any
//! of them is not refused with the documented fault (3/1 `InvalidCustomerNumber`, 3/2
//! `InvalidOrderNumber`), when anything reached the `customers` or `orders` tables, or when the
//! service logged at ERROR. Control: a legitimate payment afterwards is approved and stored, so
//! the row counts would have seen a stored hostile value.

use serde_json::{json, Value};

use super::AttackOutcome;
use crate::engine::{Backend, RawConn, TestDb};
use crate::nats::{fault_of, merge, order, Stack};

/// The hostile values (each also the reason it must be refused).
pub const HOSTILE: &[(&str, &str)] = &[
    ("ali\0ce", "NUL"),
    ("\u{202e}ecila", "right-to-left override"),
    ("ａｌｉｃｅ", "full-width look-alike"),
    ("   ", "whitespace only"),
    ("al\u{200b}ice", "zero-width space"),
    ("\u{2066}alice\u{2069}", "bidi isolate"),
    ("alice\n", "line feed"),
    ("\u{feff}alice", "byte-order mark"),
];

fn pay_body(order_no: &str, customer: &str) -> Value {
    merge(
        order(order_no, "10.00", customer),
        json!({"card": {"number": "4111111111111111", "expire_month": "12",
                        "expire_year": "2030", "holder": "ALICE SMITH", "cvc": "123"}}),
    )
}

fn stored(conn: &mut RawConn) -> (i64, i64) {
    let count = |conn: &mut RawConn, table: &str| {
        conn.numbers(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"
        ))
        .first()
        .copied()
        .unwrap_or(-1)
    };
    (count(conn, "customers"), count(conn, "orders"))
}

/// The attack on one backend.
pub async fn hostile_identifiers_are_stored(backend: Backend) -> AttackOutcome {
    let name = match backend {
        Backend::Sqlite => "hostile identifiers (SQLite)",
        Backend::Postgres => "hostile identifiers (PostgreSQL)",
    };
    let db = TestDb::new(backend);
    let stack = Stack::start_with(Some(db.url.clone()), |_| {}).await;
    let mut conn = RawConn::open(&db);
    let before = stored(&mut conn);
    let mut findings = Vec::new();
    for (i, (value, what)) in HOSTILE.iter().enumerate() {
        let as_customer = stack.gw("pay", pay_body(&format!("h-{i}"), value)).await;
        if fault_of(&as_customer) != Some((3, 1)) {
            findings.push(format!("customer number with {what}: {as_customer}"));
        }
        let as_order = stack.gw("pay", pay_body(value, "hostile-order")).await;
        if fault_of(&as_order) != Some((3, 2)) {
            findings.push(format!("order number with {what}: {as_order}"));
        }
        let offer = stack
            .gw("offer", order(&format!("o-{i}"), "10.00", value))
            .await;
        if fault_of(&offer) != Some((3, 1)) {
            findings.push(format!("offer for a customer number with {what}: {offer}"));
        }
    }
    let after = stored(&mut conn);
    if after != before {
        findings.push(format!(
            "rows (customers, orders) went from {before:?} to {after:?}"
        ));
    }
    let log = stack.app.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    if !errors.is_empty() {
        findings.push(format!("ERROR log lines: {errors:?}"));
    }
    // Control: the same request with a plain value is approved and stored.
    let legit = stack.gw("pay", pay_body("legit-1", "alice")).await;
    let control = stored(&mut conn);
    let control_ok =
        legit["order_state"] == "Approved" && control.0 > after.0 && control.1 > after.1;
    if !control_ok {
        findings.push(format!(
            "CONTROL FAILED (probe blind): legit payment {legit}, rows {after:?} → {control:?}"
        ));
    }
    AttackOutcome {
        name,
        succeeded: !findings.is_empty(),
        evidence: if findings.is_empty() {
            format!(
                "{} hostile values refused as customer and order numbers, rows unchanged {before:?}, no ERROR log; control stored {control:?}",
                HOSTILE.len()
            )
        } else {
            findings.join("; ")
        },
    }
}
