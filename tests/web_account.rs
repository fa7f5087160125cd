//! The merchant's personal account over HTTPS (issue 15 §2, docs/account.md), against the real
//! binary: sign-in with personal-account users only (not web-service logins), secure cookies,
//! CSRF on every change, a strict CSP, the One Click tab and a customer's page from the engine's
//! view (masked cards only), Deny set and cleared and a card deleted through the engine commands
//! NATS uses (the payment page sees the change; the audit trail names the user; a double submit
//! applies once), another merchant's user seeing nothing, RU and EN, and the lockout; and the
//! TOTP second factor on SQLite and PostgreSQL: enrolled by `oneclick admin account-user
//! --totp`, stored sealed, needed at sign-in and for every change, a code accepted once, wrong
//! codes counted by the sign-in lockout, no secret in a trace log.

use oneclick_testkit as support;
use serde_json::{json, Value};
use support::attacks::logs::{self, Secrets};
use support::card_scan::Haystack;
use support::engine::{Backend, RawConn, TestDb};
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

// ---- the TOTP second factor (docs/account.md, "Second factor") --------------------------------

/// Signs in with a one-time code (the sign-in form's `code` field).
async fn sign_in_with_code(
    browser: &mut AccountClient,
    login: &str,
    password: &str,
    code: &str,
) -> support::web::HttpReply {
    let page = browser.get("/account/login").await;
    let csrf = field(&page.text(), "csrf").expect("the sign-in form's token");
    browser
        .post_form(
            "/account/login",
            &[
                ("merchant_id", "452739"),
                ("login", login),
                ("password", password),
                ("code", code),
                ("csrf", &csrf),
                ("lang", "en"),
            ],
        )
        .await
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `oneclick admin account-user … --totp` as an operator runs it: the otpauth:// URI it printed,
/// read back by the crate the engine verifies with.
fn enrol(stack: &Stack, login: &str) -> (String, totp_rs::Totp) {
    let out = stack.app.admin(&[
        "account-user",
        "--merchant",
        "452739",
        "--login",
        login,
        "--totp",
    ]);
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI printed: {out}"))
        .to_string();
    let totp = totp_rs::Totp::from_url(&uri).expect("an RFC 6238 URI");
    assert_eq!(
        (totp.digits(), totp.step(), totp.algorithm()),
        (6, 30, totp_rs::Algorithm::SHA1),
        "the authenticator apps' defaults"
    );
    (uri, totp)
}

/// A 6-digit code that is none of the codes of the current step ±1 (and of the step after).
fn wrong_code(totp: &totp_rs::Totp) -> String {
    let now = unix_now();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| (0..4).all(|i| totp.generate(now - 30 + i * 30).to_string() != *c))
        .expect("a wrong code")
}

/// The failures counted for anna from 127.0.0.1 on the personal account (0: none).
fn failures(raw: &mut RawConn) -> i64 {
    raw.numbers(
        "SELECT CAST(failures AS BIGINT) AS n FROM login_lockouts \
         WHERE merchant_id = 452739 AND login = 'anna' AND source = 'account:127.0.0.1'",
    )
    .first()
    .copied()
    .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

async fn a_totp_user_signs_in_and_changes_only_with_fresh_codes(backend: Backend) {
    let db = TestDb::new(backend);
    let mut web = WebStack::start(Some(db.url.clone()), |app| {
        app.set_env("ONECLICK__LOGIN__THROTTLE_BURST", "60");
        // Every log turned up: the secret must not reach any of it.
        app.set_env("RUST_LOG", "trace");
        app.set_env("ONECLICK__LOG__LEVEL", "trace");
    })
    .await;
    let stack = &web.stack;
    pay(stack, "tf-1", "c-1").await;
    web.account_user(452739, "anna", "anna-secret-1");
    let (uri, totp) = enrol(stack, "anna");
    let secret_b32 = totp.secret().to_base32();
    let secret = totp.secret().as_bytes().to_vec();
    assert_eq!(secret.len(), 20, "160 bits (RFC 4226)");

    // The row holds the secret sealed: not its bytes, not its base32, with its key version.
    let mut raw = RawConn::open(&db);
    let (sealed_hex, row_text) = match backend {
        Backend::Sqlite => (
            "SELECT hex(totp_secret) AS v FROM account_users WHERE login = 'anna'",
            "SELECT merchant_id || login || password_hash || hex(totp_secret) || \
             totp_key_version AS v FROM account_users WHERE login = 'anna'",
        ),
        Backend::Postgres => (
            "SELECT upper(encode(totp_secret, 'hex')) AS v FROM account_users WHERE login = 'anna'",
            "SELECT row_to_json(a)::text AS v FROM account_users a WHERE login = 'anna'",
        ),
    };
    let sealed = raw.texts(sealed_hex)[0].clone().expect("a sealed secret");
    assert_eq!(sealed.len(), 2 * (12 + 20 + 16), "nonce, ciphertext, tag");
    assert!(
        !sealed.contains(&hex(&secret)),
        "the secret's bytes are stored"
    );
    let row = raw.texts(row_text)[0].clone().unwrap_or_default();
    assert!(
        !row.contains(&secret_b32),
        "the base32 secret is stored: {row}"
    );
    assert_eq!(
        raw.numbers(
            "SELECT CAST(totp_key_version AS BIGINT) AS n FROM account_users WHERE login = 'anna'"
        ),
        vec![1]
    );
    assert!(audit_has_admin(stack, "account.totp_enrolled"));

    // The password alone no longer signs in, nor with a wrong code; each counts as a failure.
    let mut browser = AccountClient::new(web.https.clone());
    let page = browser.get("/account/login").await.text();
    assert!(
        page.contains("name=\"code\""),
        "the sign-in form asks for a code"
    );
    let refused = browser
        .sign_in(DEMO_MERCHANT, "anna", "anna-secret-1")
        .await;
    assert!(
        refused.text().contains("Wrong login or password"),
        "{}",
        refused.text()
    );
    assert!(!browser.cookies.contains_key("__Host-oneclick_session"));
    assert_eq!(failures(&mut raw), 1);
    let wrong = wrong_code(&totp);
    let refused = sign_in_with_code(&mut browser, "anna", "anna-secret-1", &wrong).await;
    assert!(refused.text().contains("Wrong login or password"));
    assert_eq!(failures(&mut raw), 2);

    // The right code signs in (and clears the streak); the same code again is refused.
    let now = unix_now();
    let code = totp.generate(now).to_string();
    let signed_in = sign_in_with_code(&mut browser, "anna", "anna-secret-1", &code).await;
    assert_eq!(
        (signed_in.status, signed_in.header("location")),
        (303, Some("/account/customers")),
        "{}",
        signed_in.text()
    );
    assert_eq!(failures(&mut raw), 0);
    let mut replay = AccountClient::new(web.https.clone());
    let replayed = sign_in_with_code(&mut replay, "anna", "anna-secret-1", &code).await;
    assert_eq!(replayed.status, 200, "a replayed code is refused");
    assert!(!replay.cookies.contains_key("__Host-oneclick_session"));
    assert_eq!(failures(&mut raw), 1);

    // Deny without a code: refused with a clear message, nothing changed, the failure counted.
    let page = browser.get("/account/customer?number=c-1").await.text();
    assert!(
        page.contains("name=\"code\""),
        "change forms ask for a code: {page}"
    );
    let deny = status_form(&page, "deny");
    let refused = browser
        .post_form(
            "/account/customer/status",
            &deny
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(refused.status, 200);
    assert!(
        refused
            .text()
            .contains("Wrong or missing one-time code: nothing was changed"),
        "{}",
        refused.text()
    );
    assert_eq!(failures(&mut raw), 2);
    // With the code already used to sign in: a replay, refused the same way.
    let mut with_code = deny.clone();
    with_code.push(("code", code.clone()));
    assert_eq!(
        post(&mut browser, "/account/customer/status", &with_code).await,
        200
    );
    assert_eq!(failures(&mut raw), 3);
    let offer = stack.gw("offer", order("tf-2", "1.00", "c-1")).await;
    assert_eq!(offer["status"], "member", "nothing changed: {offer}");

    // With a fresh code (the next step's, within the ±1 window): done, audited.
    let fresh = totp.generate(now + 30).to_string();
    let mut with_fresh = deny.clone();
    with_fresh.push(("code", fresh));
    assert_eq!(
        post(&mut browser, "/account/customer/status", &with_fresh).await,
        303
    );
    let offer = stack.gw("offer", order("tf-2", "1.00", "c-1")).await;
    assert_eq!(offer["status"], "deny", "{offer}");
    assert_eq!(failures(&mut raw), 0, "a right code clears the streak");
    assert!(audit_has(stack, "customer.status_changed"));

    // Removing the second factor: the password alone signs in and changes again.
    let out = stack.app.admin(&[
        "account-user",
        "--merchant",
        "452739",
        "--login",
        "anna",
        "--no-totp",
    ]);
    assert!(out.contains("TOTP removed"), "{out}");
    assert!(audit_has_admin(stack, "account.totp_removed"));
    let mut plain = AccountClient::new(web.https.clone());
    assert_eq!(
        plain
            .sign_in(DEMO_MERCHANT, "anna", "anna-secret-1")
            .await
            .status,
        303
    );
    let page = plain.get("/account/customer?number=c-1").await.text();
    assert!(!page.contains("name=\"code\""), "{page}");
    let clear = status_form(&page, "clear_deny");
    assert_eq!(
        post(&mut plain, "/account/customer/status", &clear).await,
        303
    );
    let offer = stack.gw("offer", order("tf-3", "1.00", "c-1")).await;
    assert_eq!(offer["status"], "member", "{offer}");

    // Enrolled again (a new secret): wrong codes with the right password lock the sign-in at the
    // tenth failure, as wrong passwords do; then even a right code is refused.
    let (uri_again, totp) = enrol(stack, "anna");
    assert_ne!(uri_again, uri, "a new secret");
    let wrong = wrong_code(&totp);
    let mut attacker = AccountClient::new(web.https.clone());
    for i in 0..10 {
        let page = sign_in_with_code(&mut attacker, "anna", "anna-secret-1", &wrong)
            .await
            .text();
        let expected = if i < 9 {
            "Wrong login or password"
        } else {
            "Too many failed logins"
        };
        assert!(page.contains(expected), "attempt {i}: {page}");
    }
    let code = totp.generate(unix_now()).to_string();
    let locked = sign_in_with_code(&mut attacker, "anna", "anna-secret-1", &code).await;
    assert!(locked.text().contains("Too many failed logins"));
    // A clean stop, so everything the service buffered reaches its log.
    web.stack.app.terminate();
    let stack = &web.stack;

    // No log line holds either secret (every form of it) or the password, at trace level.
    let mut secrets = Secrets {
        passwords: vec![("anna".into(), "anna-secret-1".into())],
        ..Secrets::default()
    };
    for (which, uri) in [("first", &uri), ("second", &uri_again)] {
        let totp = totp_rs::Totp::from_url(uri).expect("uri");
        secrets.key_material.push((
            format!("{which} TOTP secret (base32)"),
            totp.secret().to_base32().into_bytes(),
        ));
        secrets.key_material.push((
            format!("{which} TOTP secret (bytes)"),
            totp.secret().as_bytes().to_vec(),
        ));
    }
    let log = Haystack {
        place: "oneclick log".into(),
        bytes: stack.app.log_text().into_bytes(),
        numbers_only: false,
    };
    let text = String::from_utf8_lossy(&log.bytes);
    assert!(
        text.contains("trace logging on") && text.contains("personal account: signed in"),
        "the log of this run, at trace: {text}"
    );
    let outcome = logs::read_logs("totp secret in logs", &[log], &secrets);
    assert!(!outcome.succeeded, "{}", outcome.evidence);
}

/// An audit row of the admin CLI with `action` for merchant 452739.
fn audit_has_admin(stack: &Stack, action: &str) -> bool {
    stack
        .app
        .admin(&["audit", "--merchant", "452739"])
        .lines()
        .any(|l| l.contains("admin-cli:") && l.contains(action) && l.contains("anna"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_user_signs_in_and_changes_only_with_fresh_codes_on_sqlite() {
    a_totp_user_signs_in_and_changes_only_with_fresh_codes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_user_signs_in_and_changes_only_with_fresh_codes_on_postgres() {
    a_totp_user_signs_in_and_changes_only_with_fresh_codes(Backend::Postgres).await;
}
