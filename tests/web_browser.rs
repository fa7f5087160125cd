//! The personal account in a real headless browser (issue 15 §4; Debian's chromium over
//! WebDriver, testkit/src/browser.rs): a merchant's user signs in, sees the member, sets Deny —
//! after which the payment page (NATS, as a gateway) offers no more saving — and the sign-in
//! locks after ten wrong passwords. The pages have no script; the browser proves they work
//! without one under their CSP. Each page is photographed (ONECLICK_SCREENSHOTS_DIR=docs/screenshots
//! refreshes the committed pictures).

use oneclick_testkit as support;
use serde_json::json;
use support::browser::Browser;
use support::nats::*;
use support::web::WebStack;

async fn sign_in(browser: &Browser, base: &str, login: &str, password: &str) {
    browser.goto(&format!("{base}/account/login")).await;
    browser.fill("merchant_id", "452739").await;
    browser.fill("login", login).await;
    browser.fill("password", password).await;
    browser.click("#sign-in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_user_sets_deny_in_the_browser_and_the_save_offer_disappears() {
    let web = WebStack::start(None, |_| {}).await;
    let stack = &web.stack;
    web.account_user(452739, "anna", "anna-secret-1");
    for (i, customer) in ["alice", "bob", "carol"].iter().enumerate() {
        let body = merge(
            order(&format!("b-{i}"), "10.00", customer),
            json!({"card": card(["4111111111111111", "5555555555554444", "2200000000000004"][i], "123")}),
        );
        assert_eq!(stack.gw("pay", body).await["card_saved"], true);
    }
    let base = format!("https://localhost:{}", web.https.port);
    let browser = Browser::start().await;

    browser.goto(&format!("{base}/account/login")).await;
    browser.screenshot("account-login").await;
    sign_in(&browser, &base, "anna", "anna-secret-1").await;
    browser.wait_for("#customers").await;
    assert_eq!(browser.path().await, "/account/customers");
    assert_eq!(browser.text("#total").await, "3");
    browser.screenshot("account-customers").await;

    browser
        .click("a[href='/account/customer?number=alice']")
        .await;
    assert_eq!(browser.text("#customer-status").await, "member");
    assert!(browser.text("#cards").await.contains("411111******1111"));
    browser.screenshot("account-customer").await;
    browser.click("#set-deny").await;
    browser.wait_for("#clear-deny").await;
    assert_eq!(browser.text("#customer-status").await, "deny");
    browser.screenshot("account-customer-deny").await;
    let offer = stack.gw("offer", order("b-9", "1.00", "alice")).await;
    assert_eq!(
        (offer["status"].as_str(), offer["save_offer"].as_bool()),
        (Some("deny"), Some(false)),
        "{offer}"
    );

    browser.click("#tab-settings").await;
    browser.wait_for("#threshold").await;
    assert_eq!(browser.text("#threshold").await, "1");
    browser.screenshot("account-settings").await;
    browser
        .goto(&format!("{base}/account/customers?lang=ru"))
        .await;
    assert!(browser
        .source()
        .await
        .contains("Участники программы One Click"));
    browser.screenshot("account-customers-ru").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_passwords_in_the_browser_lock_the_sign_in() {
    let web = WebStack::start(None, |app| {
        app.set_env("ONECLICK__LOGIN__THROTTLE_BURST", "30")
    })
    .await;
    web.account_user(452739, "anna", "anna-secret-1");
    let base = format!("https://localhost:{}", web.https.port);
    let browser = Browser::start().await;
    for i in 0..10 {
        sign_in(&browser, &base, "anna", &format!("guess-{i}")).await;
        browser.wait_for("#error").await;
        let error = browser.text("#error").await;
        let expected = if i < 9 {
            "Wrong login or password"
        } else {
            "Too many failed logins"
        };
        assert!(error.contains(expected), "attempt {i}: {error}");
    }
    sign_in(&browser, &base, "anna", "anna-secret-1").await;
    assert_eq!(
        browser.path().await,
        "/account/login",
        "the right password is refused once locked"
    );
    assert!(browser
        .text("#error")
        .await
        .contains("Too many failed logins"));
    browser.screenshot("account-locked").await;
    browser.close().await;
}
