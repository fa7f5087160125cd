//! The original HTTP web services over HTTPS (issue 15 §1, docs/http.md), against the real
//! binary with its web listener on (certificates from the shipped `scripts/make-certs`):
//! every example of the reference documents replayed byte for byte and compared with the NATS
//! answer to the same bytes; one scenario over NATS and over HTTPS leaving the same stored
//! state; and the attacks: oversized and slow bodies, a slow head, plaintext, wrong and locked
//! credentials with a spoofed `X-Forwarded-For`, another merchant's customer and token.

use std::time::Duration;

use oneclick_testkit as support;
use serde_json::{json, Value};
use support::nats::*;
use support::web::{read_reply, WebStack};
use tokio::io::AsyncWriteExt as _;

const TOKEN_LIST: &str = "/pay/oneclick/v1/token.cfm";
const TOKEN_REMOVE: &str = "/pay/oneclick/v1/rem_token.cfm";
const TOKEN_PAY: &str = "/pay/tokenpay.cfm";

/// The reference's `rem_token.cfm` request example, byte for byte (003: "An example of request").
const REFERENCE_REM_TOKEN: &str = r#"{"merchant":{"merchant_id":"452739","login":"LOGIN", "password":"PASSWORD"}, "token": "54F5A3DE-4B47-4B40-03B5-7FF992D6B401", "language": "RU", "customernumber":"1234"}"#;
/// The original's `token.cfm` request (docs/rules.md; from the original's public documentation).
const REFERENCE_TOKEN_LIST: &str = r#"{"merchant":{"merchant_id":"452739","login":"LOGIN","password":"PASSWORD"},"customernumber":"1234","language":"RU"}"#;
/// The reference's reply examples of `token.cfm` (003; card art left out: we send `assets: []`).
const REFERENCE_TOKEN_LIST_REPLY: &str = r#"[{"expire":"12.2025","token":"91720736-CF93-469C-63A0-E5859815D6BA","bank":"Bank USA","brand":"MasterCard","bin":546792,"active":true,"needCVC":false,"post":"4128","assets":[]}]"#;
/// The reference's `rem_token.cfm` reply example (003).
const REFERENCE_REM_TOKEN_REPLY: &str =
    r#"{"message":"Token 33479991-B4E5-40FE-D9ED-EDC94BA7FA14 is removed"}"#;

fn pay_body(order_no: &str, customer: &str, number: &str) -> Value {
    merge(
        order(order_no, "10.00", customer),
        json!({"card": card(number, "123")}),
    )
}

/// Saves `number` for `customer` by a payment on the payment page (NATS, as a gateway).
async fn save_card(stack: &Stack, order_no: &str, customer: &str, number: &str) -> String {
    let paid = stack.gw("pay", pay_body(order_no, customer, number)).await;
    assert_eq!(paid["card_saved"], true, "{paid}");
    paid["token"].as_str().expect("token").to_string()
}

/// The same bytes as a NATS merchant request of the demo merchant.
async fn over_nats(stack: &Stack, endpoint: &str, bytes: &[u8]) -> Value {
    request_raw(
        &stack.merchant_client,
        stack
            .app
            .subject(&format!("merchant.{DEMO_MERCHANT}.{endpoint}")),
        bytes.to_vec(),
    )
    .await
}

/// Object keys and JSON types, for comparing shapes with the reference's examples.
fn shape(v: &Value) -> Vec<(String, &'static str)> {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut keys: Vec<_> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), kind(v)))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_example_over_https_answers_as_the_nats_service_does() {
    let web = WebStack::start(None, |_| {}).await;
    let stack = &web.stack;
    // The examples' own credentials, so their bytes are sent unchanged.
    stack.app.admin(&[
        "user",
        "--merchant",
        "452739",
        "--login",
        "LOGIN",
        "--password",
        "PASSWORD",
    ]);
    let visa = save_card(stack, "ref-1", "1234", "4111111111111111").await;
    let mastercard = save_card(stack, "ref-2", "1234", "5555555555554444").await;

    // token.cfm: the same reply as NATS, the reference's fields and types.
    let http = web
        .https
        .post(TOKEN_LIST, REFERENCE_TOKEN_LIST.as_bytes())
        .await;
    assert_eq!(http.status, 200);
    assert!(http
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let list = http.json();
    assert_eq!(
        list,
        over_nats(stack, "token.list", REFERENCE_TOKEN_LIST.as_bytes()).await
    );
    let cards = list.as_array().expect("an array");
    assert_eq!(cards.len(), 2, "{list}");
    let reference: Value = serde_json::from_str(REFERENCE_TOKEN_LIST_REPLY).expect("reference");
    for card in cards {
        assert_eq!(shape(card), shape(&reference[0]), "{card}");
    }
    // merchant_id as a number and the camelCase spelling answer the same.
    let variant = json!({"merchant":{"merchant_id":452739,"login":"LOGIN","password":"PASSWORD"},"customerNumber":"1234","language":"RU"});
    assert_eq!(web.https.post_json(TOKEN_LIST, &variant).await, list);

    // rem_token.cfm, byte for byte: its token does not exist here → the same fault, in Russian.
    let http = web
        .https
        .post(TOKEN_REMOVE, REFERENCE_REM_TOKEN.as_bytes())
        .await;
    assert_eq!(http.status, 200);
    let fault = http.json();
    assert_eq!(fault_of(&fault), Some((4, 1)), "{fault}");
    assert_eq!(fault["fault"]["detail"], "Токен не найден");
    assert_eq!(
        fault,
        over_nats(stack, "token.remove", REFERENCE_REM_TOKEN.as_bytes()).await
    );
    // With a real token: the reference's reply shape, and the card is gone for NATS too.
    let remove = REFERENCE_REM_TOKEN.replace("54F5A3DE-4B47-4B40-03B5-7FF992D6B401", &visa);
    let removed = web.https.post(TOKEN_REMOVE, remove.as_bytes()).await.json();
    assert_eq!(
        removed,
        json!({"message": format!("Token {visa} is removed")})
    );
    let reference: Value = serde_json::from_str(REFERENCE_REM_TOKEN_REPLY).expect("reference");
    assert_eq!(shape(&removed), shape(&reference));
    let after = over_nats(stack, "token.list", REFERENCE_TOKEN_LIST.as_bytes()).await;
    assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");
    assert_eq!(after[0]["token"], mastercard.as_str());

    // Token Pay (the body is ours where the reference is silent: docs/http.md).
    let pay = json!({"merchant":{"merchant_id":"452739","login":"LOGIN","password":"PASSWORD"},
        "order_number":"tp-1","order_amount":"99.00","order_currency":"RUB","tokenType":5,
        "paymentToken":{"token": mastercard,"customerNumber":"1234"},"language":"EN"});
    let paid = web.https.post_json(TOKEN_PAY, &pay).await;
    assert_eq!(paid["order_state"], "Approved", "{paid}");
    assert_eq!(paid["kind"], "token_pay");
    // A repeat over NATS of the same order returns the stored first result (R16).
    let repeat = over_nats(stack, "token.pay", &serde_json::to_vec(&pay).expect("json")).await;
    assert_eq!(repeat, paid);

    // Every answer has its own request id.
    let a = web
        .https
        .post(TOKEN_LIST, REFERENCE_TOKEN_LIST.as_bytes())
        .await;
    let b = web
        .https
        .post(TOKEN_LIST, REFERENCE_TOKEN_LIST.as_bytes())
        .await;
    let (a, b) = (a.header("x-request-id"), b.header("x-request-id"));
    assert!(a.is_some_and(|id| id.len() == 36), "{a:?}");
    assert_ne!(a, b);
    // Other URLs and methods are not served.
    assert_eq!(web.https.post("/pay/other.cfm", b"{}").await.status, 404);
}

/// Plays one customer's story through `call` and returns what the vault then holds for it.
async fn story(
    stack: &Stack,
    customer: &str,
    call: &dyn Fn(&'static str, Value) -> futures::future::BoxFuture<'static, Value>,
) -> Value {
    let first = save_card(
        stack,
        &format!("{customer}-1"),
        customer,
        "4111111111111111",
    )
    .await;
    let second = save_card(
        stack,
        &format!("{customer}-2"),
        customer,
        "2200000000000004",
    )
    .await;
    let auth = json!({"merchant_id":"452739","login":DEMO_LOGIN,"password":DEMO_PASSWORD});
    let paid = call(
        "pay",
        json!({"merchant": auth, "order_number": format!("{customer}-3"), "order_amount": "12.50",
            "order_currency": "RUB", "token_type": 5,
            "payment_token": {"token": first, "customer_number": customer}}),
    )
    .await;
    assert_eq!(paid["order_state"], "Approved", "{paid}");
    let removed = call(
        "remove",
        json!({"merchant": auth, "customernumber": customer, "token": second}),
    )
    .await;
    assert!(removed["message"].is_string(), "{removed}");
    let list = call(
        "list",
        json!({"merchant": auth, "customernumber": customer}),
    )
    .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    // What is stored, as the personal-account view shows it (NATS), minus the dates.
    let page = stack
        .merchant("customers.list", json!({"search": customer}))
        .await;
    let mut view = page["customers"][0].clone();
    strip(&mut view, customer);
    view
}

/// Removes what differs between two customers by nature: dates, tokens, their numbers.
fn strip(v: &mut Value, customer: &str) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| {
                !k.ends_with("_at")
                    && !k.contains("date")
                    && k != "token"
                    && !k.starts_with("last_")
            });
            for (_, v) in map.iter_mut() {
                strip(v, customer);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, customer)),
        Value::String(s) if s == customer => *s = "<customer>".into(),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_story_over_nats_and_over_https_stores_the_same_state() {
    // On PostgreSQL (the others run on SQLite): the state compared is the production backend's.
    let db = support::engine::TestDb::new(support::engine::Backend::Postgres);
    let web = std::sync::Arc::new(WebStack::start(Some(db.url.clone()), |_| {}).await);
    let nats_web = web.clone();
    let via_nats =
        move |what: &'static str, body: Value| -> futures::future::BoxFuture<'static, Value> {
            let web = nats_web.clone();
            Box::pin(async move {
                let endpoint = match what {
                    "pay" => "token.pay",
                    "remove" => "token.remove",
                    _ => "token.list",
                };
                over_nats(
                    &web.stack,
                    endpoint,
                    &serde_json::to_vec(&body).expect("json"),
                )
                .await
            })
        };
    let https_web = web.clone();
    let via_https =
        move |what: &'static str, body: Value| -> futures::future::BoxFuture<'static, Value> {
            let web = https_web.clone();
            Box::pin(async move {
                let path = match what {
                    "pay" => TOKEN_PAY,
                    "remove" => TOKEN_REMOVE,
                    _ => TOKEN_LIST,
                };
                web.https.post_json(path, &body).await
            })
        };
    let over_nats_state = story(&web.stack, "story-nats", &via_nats).await;
    let over_https_state = story(&web.stack, "story-https", &via_https).await;
    assert!(over_nats_state.is_object(), "{over_nats_state}");
    assert_eq!(over_nats_state, over_https_state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_web_services_are_refused_and_leave_no_trace_in_the_logs() {
    let web = WebStack::start(None, |app| {
        app.set_env("ONECLICK__WEB__HEADER_TIMEOUT_MS", "1000");
        app.set_env("ONECLICK__WEB__BODY_TIMEOUT_MS", "1000");
        app.set_env("ONECLICK__SERVICE__MAX_REQUEST_BYTES", "4096");
        // Enough bucket for the lockout to be reached before the throttle (both tested elsewhere).
        app.set_env("ONECLICK__LOGIN__THROTTLE_BURST", "30");
    })
    .await;
    let stack = &web.stack;
    let token = save_card(stack, "atk-1", "victim", "4111111111111111").await;
    let auth = json!({"merchant_id":"452739","login":DEMO_LOGIN,"password":DEMO_PASSWORD});

    // Oversized: refused by its declared length, and by what arrives when none is declared.
    let big = vec![b' '; 5000];
    let reply = web.https.post(TOKEN_LIST, &big).await;
    assert_eq!((reply.status, fault_of(&reply.json())), (413, Some((1, 4))));
    let mut tls = web.https.connect().await;
    tls.write_all(b"POST /pay/oneclick/v1/token.cfm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .expect("head");
    for _ in 0..6 {
        tls.write_all(b"3E8\r\n").await.expect("chunk size");
        tls.write_all(&[b' '; 1000]).await.expect("chunk");
        tls.write_all(b"\r\n").await.expect("chunk end");
    }
    let reply = read_reply(&mut tls, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!((reply.status, fault_of(&reply.json())), (413, Some((1, 4))));

    // A body that never finishes: 408 with fault 9/2 once web.body_timeout_ms has passed.
    let mut tls = web.https.connect().await;
    tls.write_all(b"POST /pay/oneclick/v1/token.cfm HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{\"merchant\":")
        .await
        .expect("partial");
    let reply = read_reply(&mut tls, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!((reply.status, fault_of(&reply.json())), (408, Some((9, 2))));

    // A head that never finishes (slowloris): the connection is closed without an answer.
    let mut tls = web.https.connect().await;
    tls.write_all(b"POST /pay/oneclick/v1/token.cfm HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        // Ends only when the server has closed the connection (writes then fail).
        while tls.write_all(b"X-Slow: 1\r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let answer = read_reply(&mut tls, Duration::from_secs(5)).await;
    assert!(
        closed.is_ok() && answer.as_ref().is_none_or(|r| r.status == 408),
        "a slow head must be cut off: {answer:?}"
    );

    // Plaintext HTTP: no HTTP answer at all (the port speaks TLS only).
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", web.https.port))
        .await
        .expect("tcp");
    plain
        .write_all(
            format!("POST {TOKEN_LIST} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}")
                .as_bytes(),
        )
        .await
        .expect("plaintext request");
    assert!(read_reply(&mut plain, Duration::from_secs(5))
        .await
        .is_none());

    // Another merchant's credentials, customer and token (R17).
    stack
        .app
        .admin(&["merchant", "--id", "777", "--name", "Other shop"]);
    stack.app.admin(&[
        "user",
        "--merchant",
        "777",
        "--login",
        "other",
        "--password",
        "other-password",
    ]);
    let other = json!({"merchant_id":"777","login":"other","password":"other-password"});
    let list = web
        .https
        .post_json(
            TOKEN_LIST,
            &json!({"merchant": other, "customernumber": "victim"}),
        )
        .await;
    assert_eq!(list, json!([]), "another merchant sees no cards: {list}");
    let steal = web
        .https
        .post_json(
            TOKEN_REMOVE,
            &json!({"merchant": other, "customernumber": "victim", "token": token}),
        )
        .await;
    assert_eq!(fault_of(&steal), Some((4, 1)), "{steal}");
    let pay = web
        .https
        .post_json(
            TOKEN_PAY,
            &json!({"merchant": other, "order_number": "steal-1",
        "order_amount": "1.00", "order_currency": "RUB", "token_type": 5,
        "payment_token": {"token": token, "customer_number": "victim"}}),
        )
        .await;
    assert_eq!(fault_of(&pay), Some((4, 1)), "{pay}");
    // Merchant 777's login presented for merchant 452739: not a login of 452739.
    let cross = json!({"merchant_id":"452739","login":"other","password":"other-password"});
    let cross = web
        .https
        .post_json(
            TOKEN_LIST,
            &json!({"merchant": cross, "customernumber": "victim"}),
        )
        .await;
    assert_eq!(fault_of(&cross), Some((2, 2)), "{cross}");
    let list = web
        .https
        .post_json(
            TOKEN_LIST,
            &json!({"merchant": auth, "customernumber": "victim"}),
        )
        .await;
    assert_eq!(
        list[0]["token"],
        token.as_str(),
        "the victim's card is untouched: {list}"
    );

    // Wrong passwords lock (merchant, login, this address); a spoofed X-Forwarded-For changes
    // nothing, the right password from here is refused too, and NATS (another source) still works.
    let wrong = |i: usize| {
        json!({"merchant": {"merchant_id":"452739","login":DEMO_LOGIN,"password":format!("wrong-guess-{i}")},
            "customernumber": "victim"})
    };
    let mut last = Value::Null;
    for i in 0..10 {
        let body = serde_json::to_vec(&wrong(i)).expect("json");
        let spoof = format!("198.51.100.{i}");
        last = web
            .https
            .post_with(TOKEN_LIST, &[("X-Forwarded-For", spoof.as_str())], &body)
            .await
            .json();
        if i < 9 {
            assert_eq!(fault_of(&last), Some((2, 2)), "attempt {i}: {last}");
        }
    }
    assert_eq!(
        fault_of(&last),
        Some((2, 5)),
        "the tenth failure locks: {last}"
    );
    let right = json!({"merchant": auth, "customernumber": "victim"});
    let locked = web.https.post_json(TOKEN_LIST, &right).await;
    assert_eq!(fault_of(&locked), Some((2, 5)), "{locked}");
    let over_nats = stack
        .merchant("token.list", json!({"customernumber": "victim"}))
        .await;
    assert_eq!(
        over_nats[0]["token"],
        token.as_str(),
        "NATS is another source: {over_nats}"
    );
    // The operator lifts the lock of exactly this source.
    stack.app.admin(&[
        "merchant",
        "unlock",
        "--id",
        "452739",
        "--login",
        DEMO_LOGIN,
        "--source",
        "ip:127.0.0.1",
    ]);
    let unlocked = web.https.post_json(TOKEN_LIST, &right).await;
    assert_eq!(unlocked[0]["token"], token.as_str(), "{unlocked}");

    // The log names requests and the lockout, never a body, password or card.
    let log = stack.app.log_text();
    assert!(log.contains("web request"), "requests are logged");
    assert!(log.contains("ip:127.0.0.1"), "the lockout names its source");
    for secret in [
        "wrong-guess-",
        "other-password",
        DEMO_PASSWORD,
        "4111111111111111",
        "198.51.100.",
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}
