//! Upgrade in place (security issue 12): a deployment made by the oneclick of 590047f — before
//! envelope encryption, owner-bound ciphertexts and the stream flags — is upgraded by the steps
//! deploy/README.md documents, and loses nothing. The deployment is the committed fixture
//! `tests/fixtures/upgrade-590047f.tar.gz` (its README says how it was made): a plaintext key
//! file, the SQLite vault or the PostgreSQL dump, and the JetStream store.
//!
//! Steps, as an operator runs them: a key-encryption key (`admin keys generate-kek`), the old
//! key file wrapped by it (`admin keys wrap`), `admin migrate`, the service started on the old
//! store with the shipped nats.conf, then `admin keys reseal` while it runs. Checked: the old
//! plaintext file alone no longer starts the service; the streams get `deny_purge` and
//! `deny_delete` and keep their events; every old card pays before and after the re-seal; the
//! re-seal moves every card to the owner-bound associated data; no card or order is lost; the
//! registration stored by the old version (with `counts_for_limits` set, issue 13) no longer counts
//! toward the customer's turnover limit (R12/R13).

use oneclick_testkit as support;

use std::process::Command;

use serde_json::{json, Value};
use support::engine::{Backend, RawConn, TestDb};
use support::nats::{free_port, merchant_auth, merge, request, NatsServer, OneClick, ShippedUsers};

const FIXTURE: &str = "tests/fixtures/upgrade-590047f.tar.gz";

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scalar(raw: &mut RawConn, sql: &str) -> String {
    raw.texts(sql)
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_else(|| panic!("no value for {sql}"))
}

/// Carol's, eve's and dave's tokens as the old version saved them.
fn token_of(raw: &mut RawConn, customer: &str) -> String {
    scalar(
        raw,
        &format!(
            "SELECT c.token AS v FROM cards c JOIN customers u ON u.id = c.customer_id \
             WHERE u.customer_number = '{customer}'"
        ),
    )
}

async fn token_pay(
    client: &async_nats::Client,
    app: &OneClick,
    order: &str,
    token: &str,
    customer: &str,
) -> Value {
    request(
        client,
        app.subject("merchant.452739.token.pay"),
        &merge(
            json!({"merchant": merchant_auth()}),
            json!({"order_number": order, "order_amount": "2.00", "order_currency": "RUB",
                   "token_type": 5, "payment_token": {"token": token, "customer_number": customer}}),
        ),
    )
    .await
}

async fn upgrade(backend: Backend) {
    let root = support::nats::repo_root();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(root.join(FIXTURE))
            .arg("-C")
            .arg(w),
        "extract the fixture",
    );

    // The vault as the old version left it.
    let db = TestDb::new(backend);
    let url = match backend {
        Backend::Sqlite => {
            let file = db.url.trim_start_matches("sqlite://");
            std::fs::copy(w.join("oneclick.db"), file).expect("copy the old SQLite vault");
            db.url.clone()
        }
        Backend::Postgres => {
            run(
                Command::new("psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
                    .arg(w.join("postgres.sql")),
                "load the old PostgreSQL dump (psql)",
            );
            db.url.clone()
        }
    };
    let mut raw = RawConn::open(&db);
    let cards_before = scalar(&mut raw, "SELECT CAST(COUNT(*) AS TEXT) AS v FROM cards");
    let orders_before: i64 = scalar(&mut raw, "SELECT CAST(COUNT(*) AS TEXT) AS v FROM orders")
        .parse()
        .expect("a count");
    assert_eq!(
        cards_before, "3",
        "the fixture holds carol's, eve's and dave's cards"
    );
    const OLD_REGISTRATIONS_COUNTING: &str = "SELECT CAST(COUNT(*) AS TEXT) AS v FROM orders \
         WHERE kind = 'registration' AND counts_for_limits";
    assert_eq!(
        scalar(&mut raw, OLD_REGISTRATIONS_COUNTING),
        "1",
        "the old version stored dave's registration as counting toward the limits"
    );

    // NATS: the old JetStream store under the shipped configuration.
    let store = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(store.path().join("data")).expect("data dir");
    std::fs::rename(
        w.join("jetstream/jetstream"),
        store.path().join("data/jetstream"),
    )
    .expect("move the old store");
    let users = ShippedUsers::random();
    let nats = NatsServer::start_shipped_on(free_port(), store, users.clone());

    let old_keys = w.join("keys.txt");
    let kek = w.join("kek.txt");
    let wrapped = w.join("keys.wrapped.txt");
    let mut env = vec![
        ("ONECLICK__DATABASE__URL".to_string(), url),
        (
            "ONECLICK__KEYS__FILE".into(),
            old_keys.display().to_string(),
        ),
        ("ONECLICK__NATS__URL".into(), nats.url()),
        ("ONECLICK__NATS__USER".into(), "oneclick".into()),
        ("ONECLICK__NATS__PASSWORD".into(), users.oneclick.clone()),
        ("ONECLICK__LOG__LEVEL".into(), "debug".into()),
        // Merchant settings re-read on every request: the limit set below applies at once.
        ("ONECLICK__ENGINE__MERCHANT_CACHE_MS".into(), "0".into()),
        ("USER".into(), "upgrader".into()),
    ];
    let app = OneClick::configured(w, env.clone(), "oneclick");

    // The old plaintext key file alone is refused now (not silently used).
    let (ok, said) = app.admin_status(&["keys", "status"]);
    assert!(!ok, "a plaintext key file is refused by default: {said}");
    assert!(
        said.contains("plaintext"),
        "the refusal names the cause: {said}"
    );

    // Upgrade steps (deploy/README.md).
    app.admin(&["keys", "generate-kek", "--out", &kek.display().to_string()]);
    app.admin(&[
        "keys",
        "wrap",
        "--kek-file",
        &kek.display().to_string(),
        "--in",
        &old_keys.display().to_string(),
        "--out",
        &wrapped.display().to_string(),
    ]);
    env.retain(|(k, _)| k != "ONECLICK__KEYS__FILE");
    env.push(("ONECLICK__KEYS__FILE".into(), wrapped.display().to_string()));
    env.push(("ONECLICK__KEYS__KEK_FILE".into(), kek.display().to_string()));
    let mut app = OneClick::configured(w, env, "oneclick");
    app.admin(&["migrate"]);
    assert_eq!(
        scalar(&mut raw, OLD_REGISTRATIONS_COUNTING),
        "0",
        "the migration clears counts_for_limits on the old registration"
    );

    let gateway = users.gateway(&nats.url()).await;
    let merchant = users.merchant(&nats.url()).await;
    app.start(&gateway).await;

    // The streams the old version created now deny purge and delete, and keep their events.
    let service = users.service(&nats.url()).await;
    let js = async_nats::jetstream::new(service);
    for name in ["ONECLICK_CMD", "ONECLICK_EVT"] {
        let mut stream = js.get_stream(name).await.expect("the old stream");
        let info = stream.info().await.expect("stream info");
        assert!(
            info.config.deny_purge && info.config.deny_delete,
            "{name} denies purge and delete after the upgrade: {:?}",
            (info.config.deny_purge, info.config.deny_delete)
        );
        if name == "ONECLICK_EVT" {
            assert!(
                info.state.messages >= 2,
                "the old events are kept: {}",
                info.state.messages
            );
        }
    }

    // Every old card pays under the old associated data.
    let tag = match backend {
        Backend::Sqlite => "s",
        Backend::Postgres => "p",
    };
    let customers = ["carol", "eve", "dave"];
    for customer in customers {
        let token = token_of(&mut raw, customer);
        let paid = token_pay(
            &merchant,
            &app,
            &format!("up-{tag}-{customer}-1"),
            &token,
            customer,
        )
        .await;
        assert_eq!(
            paid["order_state"], "Approved",
            "{customer}'s old card pays: {paid}"
        );
    }

    // The re-seal moves every card to the owner-bound associated data, while the service runs.
    let resealed = app.admin(&["keys", "reseal"]);
    let old_aad = scalar(
        &mut raw,
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM cards WHERE aad_version <> 2 AND pan_ciphertext IS NOT NULL",
    );
    assert_eq!(
        old_aad, "0",
        "every card re-sealed to its owner: {resealed}"
    );
    for customer in customers {
        let token = token_of(&mut raw, customer);
        let paid = token_pay(
            &merchant,
            &app,
            &format!("up-{tag}-{customer}-2"),
            &token,
            customer,
        )
        .await;
        assert_eq!(
            paid["order_state"], "Approved",
            "{customer}'s re-sealed card pays: {paid}"
        );
    }

    // Nothing lost: the same cards, the old orders plus the six new ones.
    assert_eq!(
        scalar(&mut raw, "SELECT CAST(COUNT(*) AS TEXT) AS v FROM cards"),
        cards_before
    );
    let orders_after: i64 = scalar(&mut raw, "SELECT CAST(COUNT(*) AS TEXT) AS v FROM orders")
        .parse()
        .expect("a count");
    assert_eq!(
        orders_after,
        orders_before + 6,
        "old orders kept, new ones added"
    );
    let audited = scalar(
        &mut raw,
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM audit_log WHERE actor = 'admin-cli:upgrader'",
    );
    assert!(
        audited.parse::<i64>().unwrap_or(0) >= 1,
        "the key operations are in the audit trail"
    );

    // R12/R13 on the old registration (10.00, dave's, moved into today's window): under a day
    // limit of 7.00 dave's payments of today (2.00 + 2.00 above) leave room for one more 2.00,
    // and the limit is in force (the next 2.00 is declined). Counted, the registration would
    // refuse the first.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    raw.exec(&format!(
        "UPDATE orders SET created_at = {now_ms} WHERE kind = 'registration'"
    ));
    raw.exec("UPDATE merchant_limits SET day_limit = 700 WHERE merchant_id = 452739 AND currency = 'RUB'");
    let dave = token_of(&mut raw, "dave");
    let paid = token_pay(&merchant, &app, &format!("up-{tag}-dave-3"), &dave, "dave").await;
    assert_eq!(
        paid["order_state"], "Approved",
        "the old registration does not count toward the limit: {paid}"
    );
    let over = token_pay(&merchant, &app, &format!("up-{tag}-dave-4"), &dave, "dave").await;
    assert_eq!(
        (&over["order_state"], &over["response_code"]),
        (&json!("Declined"), &json!("AS105")),
        "the day limit is in force: {over}"
    );
    assert_eq!(app.terminate(), Some(0), "clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_of_590047f_upgrades_in_place_and_loses_nothing() {
    upgrade(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_deployment_of_590047f_upgrades_in_place_and_loses_nothing() {
    upgrade(Backend::Postgres).await;
}
