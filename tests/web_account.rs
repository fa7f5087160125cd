//! The merchant's personal account over HTTPS (issue 15 §2, docs/account.md), against the real
//! binary: sign-in with personal-account users only (not web-service logins), secure cookies,
//! CSRF on every change, a strict CSP, the One Click tab and a customer's page from the engine's
//! view (masked cards only), Deny set and cleared and a card deleted through the engine commands
//! NATS uses (the payment page sees the change; the audit trail names the user; a double submit
//! applies once), another merchant's user seeing nothing, RU and EN, and the lockout.

use oneclick_testkit as support;
use serde_json::{json, Value};
use support::nats::*;
use support::web::{field, AccountClient, WebStack};

async fn pay(stack: &Stack, order_no: &str, customer: &str) -> Value {
    let body = merge(
        order(order_no, "10.00", customer),
        json!({"card": card("4111111111111111", "123")}),
    );
    stack.gw("pay", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_personal_account_shows_members_and_changes_them_through_the_engine() {
    let web = WebStack::start(None, |_| {}).await;
    let stack = &web.stack;
    web.account_user(452739, "anna", "anna-secret-1");
    let paid = pay(stack, "pa-1", "c-1").await;
    let token = paid["token"].as_str().expect("token").to_string();
    let again = stack
        .gw(
            "pay_saved",
            merge(
                order("pa-2", "3.00", "c-1"),
                json!({"token": token, "cvc": "123"}),
            ),
        )
        .await;
    assert_eq!(again["order_state"], "Approved", "{again}");

    let mut browser = AccountClient::new(web.https.clone());
    // Nothing without a session.
    let page = browser.get("/account/customers").await;
    assert_eq!(
        (page.status, page.header("location")),
        (303, Some("/account/login"))
    );
    // The sign-in page: strict CSP (no script at all), its own CSRF cookie.
    let login = browser.get("/account/login").await;
    let csp = login.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    assert!(!login.text().contains("<script"), "no script on the page");
    // A web-service login does not open the personal account.
    let refused = browser
        .sign_in(DEMO_MERCHANT, DEMO_LOGIN, DEMO_PASSWORD)
        .await;
    assert_eq!(refused.status, 200);
    assert!(
        refused.text().contains("Wrong login or password"),
        "{}",
        refused.text()
    );
    // A sign-in form posted without its token (login CSRF) is refused.
    let forged = browser
        .post_form(
            "/account/login",
            &[
                ("merchant_id", "452739"),
                ("login", "anna"),
                ("password", "anna-secret-1"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert!(
        forged.text().contains("The form expired"),
        "{}",
        forged.text()
    );
    assert!(!browser.cookies.contains_key("__Host-oneclick_session"));

    let signed_in = browser
        .sign_in(DEMO_MERCHANT, "anna", "anna-secret-1")
        .await;
    assert_eq!(
        (signed_in.status, signed_in.header("location")),
        (303, Some("/account/customers"))
    );
    let cookie = signed_in
        .headers_named("set-cookie")
        .find(|c| c.starts_with("__Host-oneclick_session="))
        .expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }

    // The One Click tab: the member, its card count and payments.
    let list = browser.get("/account/customers").await;
    assert_eq!(list.status, 200, "{list:?}");
    let list = list.text();
    assert!(list.contains(">c-1</a>"), "{list}");
    assert!(list.contains("status-member"), "{list}");
    assert!(
        list.contains("<td>1</td>") && list.contains("<td>2</td>"),
        "1 card, 2 payments: {list}"
    );
    let ru = browser.get("/account/customers?lang=ru").await.text();
    assert!(ru.contains("Участники программы One Click"), "{ru}");
    browser.get("/account/customers?lang=en").await;

    // The customer's page: the card masked, never in full.
    let page = browser.get("/account/customer?number=c-1").await.text();
    assert!(page.contains("411111******1111"), "{page}");
    assert!(!page.contains("4111111111111111"));

    // A change without the session's token is refused and changes nothing.
    let forged = browser
        .post_form(
            "/account/customer/status",
            &[
                ("csrf", "x"),
                ("command_id", "c"),
                ("number", "c-1"),
                ("status", "deny"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    let offer = stack.gw("offer", order("pa-3", "1.00", "c-1")).await;
    assert_eq!(offer["status"], "member", "{offer}");

    // Deny, through the engine: the payment page stops offering to save; a double submit is one change.
    let deny = status_form(&page, "deny");
    assert_eq!(
        post(&mut browser, "/account/customer/status", &deny).await,
        303
    );
    assert_eq!(
        post(&mut browser, "/account/customer/status", &deny).await,
        303
    );
    let offer = stack.gw("offer", order("pa-3", "1.00", "c-1")).await;
    assert_eq!(
        (offer["status"].as_str(), offer["save_offer"].as_bool()),
        (Some("deny"), Some(false)),
        "{offer}"
    );
    let audit = stack.app.admin(&["audit", "--merchant", "452739"]);
    let by_anna: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("account:452739:anna") && l.contains("customer.status_changed"))
        .collect();
    assert_eq!(
        by_anna.len(),
        1,
        "one audit row for a double submit: {audit}"
    );
    let page = browser.get("/account/customer?number=c-1").await.text();
    assert!(page.contains("id=\"clear-deny\""), "{page}");
    let clear = status_form(&page, "clear_deny");
    assert_eq!(
        post(&mut browser, "/account/customer/status", &clear).await,
        303
    );
    let offer = stack.gw("offer", order("pa-3", "1.00", "c-1")).await;
    assert_eq!(offer["status"], "member", "{offer}");

    // Delete the card: the merchant's token list (NATS) is empty, the page shows it deleted.
    let page = browser.get("/account/customer?number=c-1").await.text();
    let delete = vec![
        ("csrf", field(&page, "csrf").expect("csrf")),
        (
            "command_id",
            format!("{}-1", field(&page, "command_id").expect("id")),
        ),
        ("number", "c-1".to_string()),
        ("token", token.clone()),
    ];
    assert_eq!(
        post(&mut browser, "/account/customer/delete-card", &delete).await,
        303
    );
    let list = stack
        .merchant("token.list", json!({"customernumber": "c-1"}))
        .await;
    assert_eq!(list, json!([]), "{list}");
    assert!(audit_has(stack, "card.deleted"));

    // Settings, read-only.
    let settings = browser.get("/account/settings").await.text();
    assert!(settings.contains("id=\"threshold\">1<"), "{settings}");
    assert!(
        !settings.contains("<form method=\"post\" action=\"/account/settings"),
        "read-only"
    );

    // Sign out ends the session on the server.
    let session = browser.cookies["__Host-oneclick_session"].clone();
    let page = browser.get("/account/customers").await.text();
    let csrf = field(&page, "csrf").expect("csrf");
    assert_eq!(
        browser
            .post_form("/account/logout", &[("csrf", &csrf)])
            .await
            .status,
        303
    );
    browser
        .cookies
        .insert("__Host-oneclick_session".into(), session);
    assert_eq!(
        browser.get("/account/customers").await.status,
        303,
        "the old cookie is dead"
    );
}

/// The customer c-1's status form on `page` (its CSRF token and command id) with `status`.
fn status_form(page: &str, status: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", field(page, "csrf").expect("csrf")),
        ("command_id", field(page, "command_id").expect("command id")),
        ("number", "c-1".into()),
        ("status", status.into()),
    ]
}

async fn post(browser: &mut AccountClient, path: &str, fields: &[(&'static str, String)]) -> u16 {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.post_form(path, &fields).await.status
}

fn audit_has(stack: &Stack, action: &str) -> bool {
    stack
        .app
        .admin(&["audit", "--merchant", "452739"])
        .lines()
        .any(|l| l.contains("account:452739:anna") && l.contains(action))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_merchants_user_sees_nothing_and_wrong_passwords_lock_the_sign_in() {
    let web = WebStack::start(None, |app| {
        app.set_env("ONECLICK__LOGIN__THROTTLE_BURST", "30");
    })
    .await;
    let stack = &web.stack;
    pay(stack, "iso-1", "victim").await;
    stack
        .app
        .admin(&["merchant", "--id", "777", "--name", "Other shop"]);
    web.account_user(777, "mallory", "mallory-pass");
    web.account_user(452739, "anna", "anna-secret-1");

    let mut mallory = AccountClient::new(web.https.clone());
    assert_eq!(
        mallory.sign_in(777, "mallory", "mallory-pass").await.status,
        303
    );
    let list = mallory.get("/account/customers").await.text();
    assert!(
        !list.contains("victim") && list.contains("id=\"total\">0<"),
        "{list}"
    );
    let page = mallory.get("/account/customer?number=victim").await.text();
    assert!(page.contains("Customer not found"), "{page}");
    // Mallory's own token cannot change 452739's customer either (the engine resolves in 777's union).
    let csrf = field(&page, "csrf").expect("csrf");
    let deny = [
        ("csrf", csrf.as_str()),
        ("command_id", "m-1"),
        ("number", "victim"),
        ("status", "deny"),
    ];
    mallory.post_form("/account/customer/status", &deny).await;
    let offer = stack.gw("offer", order("iso-2", "1.00", "victim")).await;
    assert_eq!(
        offer["status"], "member",
        "452739's customer is untouched: {offer}"
    );

    // Ten wrong passwords lock anna's sign-in from this address; the right one is then refused.
    let mut attacker = AccountClient::new(web.https.clone());
    for i in 0..10 {
        let page = attacker
            .sign_in(DEMO_MERCHANT, "anna", &format!("guess-{i}"))
            .await
            .text();
        let expected = if i < 9 {
            "Wrong login or password"
        } else {
            "Too many failed logins"
        };
        assert!(page.contains(expected), "attempt {i}: {page}");
    }
    let page = attacker
        .sign_in(DEMO_MERCHANT, "anna", "anna-secret-1")
        .await;
    assert!(
        page.text().contains("Too many failed logins"),
        "{}",
        page.text()
    );
    // The web services' logins from the same address are another source: unaffected.
    let list = web
        .https
        .post_json(
            "/pay/oneclick/v1/token.cfm",
            &json!({"merchant": merchant_auth(), "customernumber": "victim"}),
        )
        .await;
    assert!(list.is_array(), "{list}");
    let log = stack.app.log_text();
    assert!(
        log.contains("account:127.0.0.1"),
        "the lockout names its source"
    );
    for secret in ["guess-", "anna-secret-1", "mallory-pass"] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}
