//! End-to-end: a corpus of bad requests over NATS. Each gets its documented fault (codes from
//! the fault table, detail in the requested language) and the vault is unchanged afterwards.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use oneclick_testkit as support;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde_json::{json, Value};
use support::nats::*;

const VISA: &str = "4111111111111111";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn counts(db: &std::path::Path) -> Vec<i64> {
    let mut conn = diesel::SqliteConnection::establish(&db.display().to_string()).expect("sqlite");
    [
        "customers",
        "cards",
        "orders",
        "processed_commands",
        "recurring_agreements",
    ]
    .iter()
    .map(|t| {
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {t}"))
            .get_result::<Count>(&mut conn)
            .expect("count")
            .n
    })
    .collect()
}

fn pay(order_no: &str, amount: &str, customer: &str) -> Value {
    merge(
        order(order_no, amount, customer),
        json!({"card": card(VISA, "123")}),
    )
}

fn with(mut body: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut body;
    for key in &path[..path.len() - 1] {
        at = at.get_mut(*key).expect("path");
    }
    at[path[path.len() - 1]] = value;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_documented_fault_and_changes_nothing() {
    let stack = Stack::start().await;
    // A customer with a saved card, for the foreign-token cases.
    let saved = stack.gw("pay", pay("seed-1", "1.00", "owner-1")).await;
    let token = saved["token"].as_str().expect("token").to_string();
    let db = stack.dir.path().join("oneclick.db");
    // A second merchant in its own union.
    stack.app.admin(&[
        "merchant",
        "--id",
        "452740",
        "--name",
        "Other",
        "--signature-key",
        DEMO_KEY_B64,
    ]);
    stack.app.admin(&[
        "user",
        "--merchant",
        "452740",
        "--login",
        "other",
        "--password",
        "other-password",
    ]);
    let before = counts(&db);

    let gw_pay = stack.app.subject("gw.pay");
    let cases: Vec<(&str, Vec<u8>, (i64, i64))> = vec![
        ("malformed JSON", b"{\"merchant_id\": ".to_vec(), (1, 1)),
        (
            "wrong type",
            serde_json::to_vec(&with(
                pay("b-1", "1.00", "c1"),
                &["order_amount"],
                json!({"x": 1}),
            ))
            .unwrap(),
            (1, 1),
        ),
        (
            "missing order number",
            {
                let mut b = pay("b-2", "1.00", "c1");
                b.as_object_mut().unwrap().remove("order_number");
                serde_json::to_vec(&b).unwrap()
            },
            (1, 2),
        ),
        (
            "oversize body",
            serde_json::to_vec(&with(
                pay("b-3", "1.00", "c1"),
                &["padding"],
                json!("x".repeat(70_000)),
            ))
            .unwrap(),
            (1, 4),
        ),
        (
            "wrong signature",
            serde_json::to_vec(&with(
                pay("b-4", "1.00", "c1"),
                &["signature"],
                json!("AAAA"),
            ))
            .unwrap(),
            (3, 10),
        ),
        (
            "signature for another amount",
            serde_json::to_vec(&with(
                pay("b-5", "1.00", "c1"),
                &["order_amount"],
                json!("2.00"),
            ))
            .unwrap(),
            (3, 10),
        ),
        (
            "unknown merchant",
            serde_json::to_vec(&with(
                pay("b-6", "1.00", "c1"),
                &["merchant_id"],
                json!("999999"),
            ))
            .unwrap(),
            (2, 1),
        ),
        (
            "customer number too long",
            serde_json::to_vec(&pay("b-7", "1.00", &"x".repeat(33))).unwrap(),
            (1, 3),
        ),
        (
            "customer number empty after stripping",
            serde_json::to_vec(&pay("b-8", "1.00", "<>()")).unwrap(),
            (3, 1),
        ),
        (
            "customer number with recurring fields",
            serde_json::to_vec(&with(
                pay("b-9", "1.00", "c1"),
                &["recurring_indicator"],
                json!("1"),
            ))
            .unwrap(),
            (3, 11),
        ),
        (
            "card number fails Luhn",
            serde_json::to_vec(&with(
                pay("b-10", "1.00", "c1"),
                &["card", "number"],
                json!("4111111111111112"),
            ))
            .unwrap(),
            (3, 5),
        ),
        (
            "expired card",
            serde_json::to_vec(&with(
                pay("b-11", "1.00", "c1"),
                &["card", "expire_year"],
                json!("2020"),
            ))
            .unwrap(),
            (3, 6),
        ),
        (
            "bad CVC",
            serde_json::to_vec(&with(
                pay("b-12", "1.00", "c1"),
                &["card", "cvc"],
                json!("12a"),
            ))
            .unwrap(),
            (3, 8),
        ),
        (
            "bad holder",
            serde_json::to_vec(&with(
                pay("b-13", "1.00", "c1"),
                &["card", "holder"],
                json!("1"),
            ))
            .unwrap(),
            (3, 7),
        ),
        (
            "three decimals",
            serde_json::to_vec(&pay("b-14", "1.005", "c1")).unwrap(),
            (3, 3),
        ),
        (
            "unknown currency",
            {
                let o = json!({"merchant_id": "452739", "order_number": "b-15", "order_amount": "1.00", "order_currency": "XXX",
                           "customer_number": "c1", "signature": sign(DEMO_MERCHANT, "b-15", "1.00", "XXX", "c1"), "card": card(VISA, "123")});
                serde_json::to_vec(&o).unwrap()
            },
            (3, 4),
        ),
        (
            "order number too long",
            serde_json::to_vec(&pay(&"o".repeat(129), "1.00", "c1")).unwrap(),
            (1, 3),
        ),
    ];
    for (name, body, expected) in &cases {
        let reply = request_raw(&stack.client, gw_pay.clone(), body.clone()).await;
        assert_eq!(fault_of(&reply), Some(*expected), "{name}: {reply}");
    }

    // Saved-card and merchant cases.
    let foreign_pay = merge(
        order("b-20", "1.00", "someone-else"),
        json!({"token": token, "cvc": "123"}),
    );
    let reply = stack.gw("pay_saved", foreign_pay).await;
    assert_eq!(
        fault_of(&reply),
        Some((4, 1)),
        "a token of another customer: {reply}"
    );
    let unknown_token = merge(
        order("b-21", "1.00", "owner-1"),
        json!({"token": "00000000-0000-4000-8000-000000000000", "cvc": "123"}),
    );
    assert_eq!(
        fault_of(&stack.gw("pay_saved", unknown_token).await),
        Some((4, 1))
    );

    let wrong_password = json!({"merchant": {"merchant_id": "452739", "login": "demo", "password": "nope"}, "customernumber": "owner-1"});
    let reply = request(
        &stack.client,
        stack.app.subject("merchant.452739.token.list"),
        &wrong_password,
    )
    .await;
    assert_eq!(fault_of(&reply), Some((2, 2)), "{reply}");
    let mismatch = json!({"merchant": {"merchant_id": "452740", "login": "other", "password": "other-password"}, "customernumber": "owner-1"});
    let reply = request(
        &stack.client,
        stack.app.subject("merchant.452739.token.list"),
        &mismatch,
    )
    .await;
    assert_eq!(fault_of(&reply), Some((2, 3)), "{reply}");
    // Merchant 452740 removing merchant 452739's customer's token: the same fault as no token (R17).
    let other = json!({"merchant": {"merchant_id": "452740", "login": "other", "password": "other-password"},
                       "customernumber": "owner-1", "token": token, "language": "RU"});
    let reply = request(
        &stack.client,
        stack.app.subject("merchant.452740.token.remove"),
        &other,
    )
    .await;
    assert_eq!(fault_of(&reply), Some((4, 1)), "{reply}");
    assert_eq!(
        reply["fault"]["detail"], "Токен не найден",
        "detail in the requested language"
    );
    // A malformed token is a field fault, 3/9 (docs/protocol.md, token.remove), not 4/1.
    let reply = stack
        .merchant(
            "token.remove",
            json!({"customernumber": "owner-1", "token": "not-a-token"}),
        )
        .await;
    assert_eq!(fault_of(&reply), Some((3, 9)), "{reply}");
    let list = request(
        &stack.client,
        stack.app.subject("merchant.452740.token.list"),
        &other,
    )
    .await;
    assert_eq!(
        list,
        json!([]),
        "merchant B sees no cards of merchant A's customer"
    );

    assert_eq!(counts(&db), before, "no bad request changed the vault");
    let still = stack
        .merchant("token.list", json!({"customernumber": "owner-1"}))
        .await;
    assert_eq!(
        still[0]["token"],
        token.as_str(),
        "the owner's card is intact"
    );
}
