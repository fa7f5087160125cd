//! End-to-end: the original service's story, played over NATS against the real `oneclick`
//! binary, a private `nats-server -js` and an SQLite vault, exactly as a gateway and a merchant
//! would. Ends with a sweep of the captured logs and metrics for every card number and CVC used.

use oneclick_testkit as support;

use serde_json::{json, Value};
use support::nats::*;

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";
const MIR: &str = "2200000000000004";
const DECLINED_AS102: &str = "4000000000000002";
const CVCS: [&str; 3] = ["123", "456", "789"];

fn pay_body(order_no: &str, amount: &str, customer: &str, number: &str, cvc: &str) -> Value {
    merge(
        order(order_no, amount, customer),
        json!({"card": card(number, cvc)}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_click_story_from_first_payment_to_last_deletion() {
    let stack = Stack::start().await;
    let customer = "cust-1001";

    // First visit: nothing saved, the save offer is preselected.
    let offer = stack.gw("offer", order("o-1", "10.00", customer)).await;
    assert_eq!(offer["status"], "new", "{offer}");
    assert_eq!(offer["save_offer"], true);
    assert_eq!(offer["cards"], json!([]));

    // First payment with a new card; no save answer means yes (R4).
    let paid = stack
        .gw("pay", pay_body("o-1", "10.34", customer, VISA, CVCS[0]))
        .await;
    assert_eq!(paid["order_state"], "Approved", "{paid}");
    assert_eq!(paid["response_code"], "AS000");
    assert_eq!(paid["card_saved"], true);
    assert_eq!(paid["card"]["number"], "411111******1111");
    let visa_token = paid["token"].as_str().expect("a token").to_string();

    // Next visit: the saved card is offered; paying needs only the CVC.
    let offer = stack.gw("offer", order("o-2", "5.00", customer)).await;
    assert_eq!(offer["status"], "member");
    assert_eq!(offer["cards"][0]["token"], visa_token.as_str());
    assert_eq!(offer["need_cvc"], true);
    let saved = stack
        .gw(
            "pay_saved",
            merge(
                order("o-2", "5.00", customer),
                json!({"token": visa_token, "cvc": CVCS[0]}),
            ),
        )
        .await;
    assert_eq!(saved["order_state"], "Approved", "{saved}");
    let no_cvc = stack
        .gw(
            "pay_saved",
            merge(order("o-3", "5.00", customer), json!({"token": visa_token})),
        )
        .await;
    assert_eq!(
        fault_of(&no_cvc),
        Some((4, 10)),
        "R8: CVC required: {no_cvc}"
    );

    // A second card; the list shows both masked, last used first.
    let second = stack
        .gw(
            "pay",
            pay_body("o-4", "7.00", customer, MASTERCARD, CVCS[1]),
        )
        .await;
    let mc_token = second["token"].as_str().expect("token").to_string();
    let list = stack
        .merchant(
            "token.list",
            json!({"customernumber": customer, "language": "EN"}),
        )
        .await;
    let list = list.as_array().expect("token list is an array").clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["token"], mc_token.as_str(), "last used first");
    // Field names, types and order exactly as the original's token.cfm (docs/rules.md §4).
    let body = merge(
        json!({"merchant": merchant_auth()}),
        json!({"customernumber": customer}),
    );
    let raw = stack
        .merchant_client
        .request(
            stack
                .app
                .subject(&format!("merchant.{DEMO_MERCHANT}.token.list")),
            serde_json::to_vec(&body).expect("json").into(),
        )
        .await
        .expect("reply");
    let text = String::from_utf8(raw.payload.to_vec()).expect("utf-8");
    let expected = format!(
        "[{{\"expire\":\"12.2030\",\"token\":\"{mc_token}\",\"bank\":\"\",\"brand\":\"MasterCard\",\"bin\":555555,\"active\":true,\"needCVC\":true,\"post\":\"4444\",\"assets\":[]}},"
    );
    assert!(
        text.starts_with(&expected),
        "token list is byte-exact: {text}"
    );
    assert_eq!(list[0]["post"], "4444");
    assert_eq!(list[0]["bin"], 555555);
    assert_eq!(list[0]["expire"], "12.2030");
    assert_eq!(list[0]["assets"], json!([]));

    // Re-issued card with the same number: expiry updated, token kept (R11).
    let reissued = merge(
        order("o-5", "3.00", customer),
        json!({"card": {"number": VISA, "expire_month": "01", "expire_year": "2032", "holder": "IVAN IVANOV", "cvc": CVCS[2]}}),
    );
    let reissued = stack.gw("pay", reissued).await;
    assert_eq!(reissued["token"], visa_token.as_str(), "{reissued}");
    let list = stack
        .merchant("token.list", json!({"customernumber": customer}))
        .await;
    let visa = list
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["token"] == visa_token.as_str())
        .cloned()
        .expect("visa listed");
    assert_eq!(visa["expire"], "01.2032");

    // Merchant removes one; the customer deletes the last on the payment page.
    let removed = stack
        .merchant(
            "token.remove",
            json!({"customernumber": customer, "token": mc_token}),
        )
        .await;
    assert_eq!(
        serde_json::to_string(&removed).expect("json"),
        format!("{{\"message\":\"Token {mc_token} is removed\"}}")
    );
    let deleted = stack
        .gw(
            "delete_card",
            json!({"merchant_id": DEMO_MERCHANT, "customer_number": customer, "token": visa_token}),
        )
        .await;
    assert_eq!(deleted["message"], format!("Token {visa_token} is removed"));
    let offer = stack.gw("offer", order("o-6", "5.00", customer)).await;
    assert_eq!(offer["status"], "new", "R10: no cards left: {offer}");
    assert_eq!(offer["save_offer"], true);

    // Deny stops save offers; payments stay standard and save nothing.
    let denied = stack
        .merchant(
            "customers.status",
            json!({"customernumber": customer, "status": "deny"}),
        )
        .await;
    assert_eq!(denied["status"], "deny", "{denied}");
    let offer = stack.gw("offer", order("o-7", "5.00", customer)).await;
    assert_eq!(offer["save_offer"], false);
    let paid = stack
        .gw("pay", pay_body("o-7", "5.00", customer, MIR, CVCS[0]))
        .await;
    assert_eq!(paid["order_state"], "Approved");
    assert_eq!(paid["card_saved"], false);

    // A declined payment saves nothing (R5) and an order repeat returns the first result (R16).
    let declined = stack
        .gw(
            "pay",
            pay_body("o-8", "5.00", "cust-2002", DECLINED_AS102, CVCS[1]),
        )
        .await;
    assert_eq!(declined["order_state"], "Declined");
    assert_eq!(declined["response_code"], "AS102");
    assert_eq!(declined["card_saved"], false);
    let again = stack
        .gw(
            "pay",
            pay_body("o-8", "5.00", "cust-2002", DECLINED_AS102, CVCS[1]),
        )
        .await;
    assert_eq!(again, declined);

    // Order state for the merchant.
    let state = stack
        .merchant("order.state", json!({"order_number": "o-1"}))
        .await;
    assert_eq!(state["order_state"], "Approved", "{state}");

    // Logs and metrics never hold a card number or CVC.
    let logs = stack.app.log_text();
    let metrics = stack.app.metrics();
    assert!(
        metrics.contains("oneclick_payments_total"),
        "metrics are served"
    );
    for secret in [VISA, MASTERCARD, MIR, DECLINED_AS102] {
        assert!(!logs.contains(secret), "a PAN reached the log");
        assert!(!metrics.contains(secret), "a PAN reached the metrics");
    }
    for cvc in CVCS {
        assert!(
            !logs.contains(&format!("\"{cvc}\"")) && !logs.contains(&format!("cvc={cvc}")),
            "a CVC reached the log"
        );
    }
    assert!(logs.len() > 200, "the log was captured (debug level)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_info_lists_every_endpoint() {
    let stack = Stack::start().await;
    let reply = request(&stack.client, "$SRV.INFO.oneclick".into(), &json!({})).await;
    let names: Vec<String> = reply["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or("").to_string())
        .collect();
    for expected in [
        "gw_offer",
        "gw_pay",
        "gw_pay_saved",
        "gw_register",
        "gw_delete_card",
        "merchant_token_list",
        "merchant_token_remove",
        "merchant_token_pay",
        "merchant_order_state",
        "merchant_customers_list",
        "merchant_customers_status",
        "health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let ping = request(&stack.client, "$SRV.PING.oneclick".into(), &json!({})).await;
    assert_eq!(ping["name"], "oneclick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_token_pay_and_limits_over_nats() {
    let stack = Stack::start().await;
    let customer = "cust-3003";
    let reg = stack
        .gw(
            "register",
            merge(
                order("r-1", "0", customer),
                json!({"card": card(VISA, "321")}),
            ),
        )
        .await;
    assert_eq!(reg["order_state"], "Approved", "R13 registration: {reg}");
    assert_eq!(reg["card_saved"], true);
    let token = reg["token"].as_str().expect("token").to_string();
    let token_pay = stack
        .merchant(
            "token.pay",
            json!({"order_number": "tp-1", "order_amount": "15.00", "order_currency": "RUB", "token_type": 5,
                   "payment_token": {"token": token, "customer_number": customer}}),
        )
        .await;
    assert_eq!(token_pay["order_state"], "Approved", "R14: {token_pay}");
    // Demo limit: 100000.00 RUB a day.
    let over = stack
        .gw(
            "pay",
            pay_body("l-1", "100001.00", customer, MASTERCARD, "111"),
        )
        .await;
    assert_eq!(over["order_state"], "Declined");
    assert_eq!(over["response_code"], "AS105", "R12: {over}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_payment_complete_and_exits_zero() {
    let stack = Stack::start_with(None, |app| {
        app.set_env("ONECLICK__ACQUIRER__SIMULATOR_LATENCY_MS", "1500")
    })
    .await;
    let client = stack.gateway.clone();
    let subject = stack.app.subject("gw.pay");
    let body =
        serde_json::to_vec(&pay_body("sd-1", "10.00", "cust-4004", VISA, "123")).expect("json");
    let in_flight = tokio::spawn(async move { client.request(subject, body.into()).await });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let mut stack = stack;
    let code = tokio::task::spawn_blocking(move || {
        let code = stack.app.terminate();
        (code, stack)
    })
    .await
    .expect("join");
    let (code, _stack) = code;
    assert_eq!(code, Some(0), "exits 0 after draining");
    let reply = in_flight
        .await
        .expect("join")
        .expect("the in-flight request got its reply");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("json");
    assert_eq!(reply["order_state"], "Approved", "{reply}");
}
