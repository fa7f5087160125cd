//! The demonstration payment page (issue 15 §3; docs/demo-page.md) over HTTPS, without a
//! browser: it pays as a gateway over NATS (the stored state is the engine's, read back through
//! the merchant's token list), and it is built for attackers — card data never reaches its log or
//! the service's, forms without the session's CSRF token change nothing, every page forbids
//! scripts, framing and caching, bodies are bounded, plaintext gets no answer, only the
//! simulator's test cards are taken, and it is off by default. The browser stories are in
//! tests/web_browser.rs.

use oneclick_testkit as support;
use serde_json::json;
use support::card_scan::{contains, needles};
use support::demo::DemoPage;
use support::nats::*;
use support::web::{field, make_certs, AccountClient, WebCerts};

const PAN: &str = "4111111111111111";
const CVC: &str = "737";

async fn stack_and_page(env: &[(&str, &str)]) -> (Stack, DemoPage, WebCerts, tempfile::TempDir) {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(&dir.path().join("certs"));
    let page = DemoPage::start(&stack, &certs, env).await;
    (stack, page, certs, dir)
}

/// A browser-like client that has opened the shop and checked out as `customer`.
async fn checked_out(page: &DemoPage, customer: &str, amount: &str) -> (AccountClient, String) {
    let mut client = AccountClient::new(page.https.clone());
    let shop = client.get("/demo/").await;
    assert_eq!(shop.status, 200, "{}", shop.text());
    let csrf = field(&shop.text(), "csrf").expect("the shop form's token");
    let to = client
        .post_form(
            "/demo/checkout",
            &[("csrf", &csrf), ("customer", customer), ("amount", amount)],
        )
        .await;
    assert_eq!((to.status, to.header("location")), (303, Some("/demo/pay")));
    (client, csrf)
}

fn card_form<'a>(csrf: &'a str, number: &'a str, save: bool) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("csrf", csrf),
        ("number", number),
        ("expire_month", "12"),
        ("expire_year", "2030"),
        ("holder", "ALICE SMITH"),
        ("cvc", CVC),
        ("offered", "1"),
    ];
    if save {
        f.push(("save", "yes"));
    }
    f
}

async fn token_list(stack: &Stack, customer: &str) -> serde_json::Value {
    stack
        .merchant("token.list", json!({"customernumber": customer}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_pays_as_a_gateway_and_no_card_data_reaches_a_log() {
    let (stack, page, _certs, _dir) = stack_and_page(&[]).await;
    let (mut client, csrf) = checked_out(&page, "http-alice", "10.00").await;
    let pay = client.get("/demo/pay").await.text();
    assert!(pay.contains(r#"id="status">new<"#), "{pay}");
    assert!(
        pay.contains(r#"id="save" value="yes" checked"#),
        "the offer is preselected: {pay}"
    );

    let paid = client
        .post_form(
            "/demo/pay/card",
            &card_form(&csrf, "4111 1111 1111 1111", true),
        )
        .await;
    assert_eq!(
        (paid.status, paid.header("location")),
        (303, Some("/demo/result"))
    );
    let result = client.get("/demo/result").await.text();
    assert!(
        result.contains(">Approved<") && result.contains(r#"id="card-saved""#),
        "{result}"
    );
    let tokens = token_list(&stack, "http-alice").await;
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "{tokens}");
    let token = tokens[0]["token"].as_str().expect("token").to_string();

    // A reload of the result pays nothing more; the member is offered the saved card.
    assert!(client
        .get("/demo/result")
        .await
        .text()
        .contains(">Approved<"));
    let member = client.get("/demo/pay").await.text();
    assert!(
        member.contains("411111******1111") && member.contains(r#"id="saved-cvc""#),
        "{member}"
    );
    let paid = client
        .post_form(
            "/demo/pay/saved",
            &[("csrf", &csrf), ("token", &token), ("cvc", CVC)],
        )
        .await;
    assert_eq!(paid.status, 303);
    let result = client.get("/demo/result").await.text();
    assert!(
        result.contains(">Approved<") && !result.contains("card-saved"),
        "{result}"
    );

    for (who, log) in [
        ("demo page", page.log_text()),
        ("service", stack.app.log_text()),
    ] {
        assert!(log.len() > 100, "{who} log is empty");
        for needle in needles(&[PAN.to_string()], &[CVC.to_string()]) {
            assert!(
                !contains(log.as_bytes(), &needle),
                "{} in the {who} log",
                needle.what
            );
        }
    }
    assert!(page.log_text().contains("demo payment"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_sessions_csrf_token_change_nothing() {
    let (stack, page, _certs, _dir) = stack_and_page(&[]).await;
    let (mut client, csrf) = checked_out(&page, "csrf-bob", "10.00").await;
    // A wrong token, then a right token from another browser (no cookie): refused, nothing paid.
    let wrong = client
        .post_form("/demo/pay/card", &card_form("0123456789abcdef", PAN, true))
        .await;
    assert_eq!(wrong.status, 403);
    let mut stranger = AccountClient::new(page.https.clone());
    let foreign = stranger
        .post_form("/demo/pay/card", &card_form(&csrf, PAN, true))
        .await;
    assert_eq!(foreign.status, 403);
    let checkout = stranger
        .post_form(
            "/demo/checkout",
            &[("csrf", &csrf), ("customer", "x"), ("amount", "1.00")],
        )
        .await;
    assert_eq!(checkout.status, 403);
    assert_eq!(token_list(&stack, "csrf-bob").await, json!([]));
    // The cookie the page sets is host-only, secure, script-proof and never sent cross-site.
    let mut fresh = AccountClient::new(page.https.clone());
    let shop = fresh.get("/demo/").await;
    let cookie = shop.header("set-cookie").expect("a session cookie");
    for part in [
        "__Host-oneclick_demo=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_forbids_scripts_framing_and_caching_and_bodies_are_bounded() {
    let (stack, page, _certs, _dir) = stack_and_page(&[]).await;
    let (mut client, csrf) = checked_out(&page, "hdr-carol", "10.00").await;
    for path in [
        "/demo/",
        "/demo/pay",
        "/demo/pay?new=1",
        "/demo/static/style.css",
        "/demo/static/basket.svg",
        "/nope",
    ] {
        let reply = client.get(path).await;
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
    let form = client.get("/demo/pay").await.text();
    assert!(!form.contains("<script"), "no script on a card page");
    assert!(form.contains(
        r#"name="number" id="number" inputmode="numeric" maxlength="23" autocomplete="off""#
    ));
    // Over 8 KiB of form: refused before a payment is tried.
    let padding = "x".repeat(9000);
    let mut fields = card_form(&csrf, PAN, true);
    fields.push(("pad", &padding));
    let big = client.post_form("/demo/pay/card", &fields).await;
    assert_eq!(big.status, 413);
    assert_eq!(token_list(&stack, "hdr-carol").await, json!([]));
    // Plaintext HTTP to the port: no HTTP answer at all.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", page.port))
        .await
        .expect("connect");
    tcp.write_all(b"GET /demo/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_simulators_test_cards_are_taken_and_without_need_cvc_no_cvc_is_asked() {
    let (stack, page, _certs, _dir) = stack_and_page(&[]).await;
    let (mut client, csrf) = checked_out(&page, "cards-dan", "10.00").await;
    let real = "4242424242424242";
    let refused = client
        .post_form("/demo/pay/card", &card_form(&csrf, real, true))
        .await;
    assert_eq!(refused.header("location"), Some("/demo/pay?new=1"));
    let again = client.get("/demo/pay?new=1").await.text();
    assert!(again.contains("only the simulator"), "{again}");
    assert_eq!(token_list(&stack, "cards-dan").await, json!([]));
    for needle in needles(&[real.to_string()], &[]) {
        assert!(
            !contains(page.log_text().as_bytes(), &needle),
            "{}",
            needle.what
        );
        assert!(
            !contains(stack.app.log_text().as_bytes(), &needle),
            "{}",
            needle.what
        );
    }

    // The merchant asks for no CVC2 with saved cards: the page shows no CVC field (the engine's
    // `need_cvc`), and the saved card pays without one.
    client
        .post_form("/demo/pay/card", &card_form(&csrf, PAN, true))
        .await;
    stack
        .app
        .admin(&["merchant", "--id", "452739", "--need-cvc", "false"]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let member = loop {
        let page = client.get("/demo/pay").await.text();
        if page.contains(r#"id="no-cvc""#) || std::time::Instant::now() > until {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        member.contains(r#"id="no-cvc""#) && !member.contains(r#"id="saved-cvc""#),
        "{member}"
    );
    let token = field(&member, "token").expect("the saved card's radio button");
    client
        .post_form("/demo/pay/saved", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert!(client
        .get("/demo/result")
        .await
        .text()
        .contains(">Approved<"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_is_off_by_default_and_refuses_a_key_file_others_may_read() {
    let off = std::process::Command::new(bin())
        .arg("demo-page")
        .env("ONECLICK__NATS__URL", "nats://127.0.0.1:1")
        .output()
        .expect("demo-page");
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stderr).contains("demo.listen is empty"));

    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(&dir.path().join("certs"));
    let key = dir.path().join("key.txt");
    std::fs::write(&key, DEMO_KEY_B64).expect("key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let open_key = std::process::Command::new(bin())
        .arg("demo-page")
        .env("ONECLICK__NATS__URL", "nats://127.0.0.1:1")
        .env(
            "ONECLICK__DEMO__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("ONECLICK__DEMO__TLS_CERT_FILE", &certs.cert)
        .env("ONECLICK__DEMO__TLS_KEY_FILE", &certs.key)
        .env("ONECLICK__DEMO__SIGNATURE_KEY_FILE", &key)
        .output()
        .expect("demo-page");
    assert!(!open_key.status.success());
    assert!(
        String::from_utf8_lossy(&open_key.stderr).contains("demo.signature_key_file"),
        "{}",
        String::from_utf8_lossy(&open_key.stderr)
    );

    // The production compose file runs no demo page.
    let compose = std::fs::read_to_string(repo_root().join("docker-compose.yml")).expect("compose");
    assert!(!compose.contains("demo-page") && !compose.contains("DEMO__"));
}
