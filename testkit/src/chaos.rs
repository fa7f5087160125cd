//! Shared parts of the short chaos scenarios (`tests/chaos_short.rs`; the long versions are the
//! `oneclick-chaos` binary, `chaos/`): a [`Cluster`] of one private nats-server, one fresh
//! PostgreSQL database (from `ONECLICK_TEST_DATABASE_URL`, dropped at the end) and one or more
//! real `oneclick` processes sharing the subject prefix and the key file, plus raw SQL to read
//! what was really applied, and a merchant-surface caller for any merchant and credentials.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::engine::{Backend, RawConn, TestDb};
use super::nats::*;

/// The second merchant of the isolation scenario (its own union).
pub const OTHER_MERCHANT: i64 = 452740;
pub const OTHER_LOGIN: &str = "other";
pub const OTHER_PASSWORD: &str = "other-password";

/// NATS + PostgreSQL + `n` oneclick instances on one prefix and one key file.
pub struct Cluster {
    pub apps: Vec<OneClick>,
    pub client: async_nats::Client,
    pub nats: NatsServer,
    sql: std::sync::Mutex<RawConn>,
    // Last: the databases are dropped after the processes are killed.
    _dirs: Vec<tempfile::TempDir>,
    pub db: TestDb,
}

impl Cluster {
    /// Starts `instances` oneclick processes; `setup` runs admin commands (through the first
    /// instance's settings) after the demo merchant is seeded and before any process starts.
    pub async fn start(instances: usize, setup: impl FnOnce(&OneClick)) -> Cluster {
        let nats = NatsServer::start();
        let db = TestDb::new(Backend::Postgres);
        let mut apps: Vec<OneClick> = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..instances {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut app = OneClick::prepare(dir.path(), &nats.url(), Some(db.url.clone()));
            if let Some(first) = apps.first() {
                let keys = first.dir.join("keys.txt");
                let prefix = first.prefix.clone();
                app.set_env("ONECLICK__KEYS__FILE", &keys.display().to_string());
                app.set_env(
                    "ONECLICK__KEYS__KEK_FILE",
                    &keys.with_extension("kek").display().to_string(),
                );
                app.set_env("ONECLICK__NATS__PREFIX", &prefix);
                app.prefix = prefix;
            }
            app.set_env("ONECLICK__SERVICE__NAME", &format!("oneclick-{i}"));
            apps.push(app);
            dirs.push(dir);
        }
        setup(&apps[0]);
        let client = async_nats::connect(nats.url())
            .await
            .expect("client connects");
        for app in apps.iter_mut() {
            app.start(&client).await;
            // The health subject is shared by the queue group: wait for this process's own HTTP.
            let until = Instant::now() + Duration::from_secs(20);
            while app.metrics().is_empty() {
                assert!(
                    Instant::now() < until,
                    "instance did not open its HTTP port; log:\n{}",
                    app.log_text()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let sql = std::sync::Mutex::new(RawConn::open(&db));
        Cluster {
            apps,
            client,
            nats,
            sql,
            _dirs: dirs,
            db,
        }
    }

    pub fn subject(&self, tail: &str) -> String {
        self.apps[0].subject(tail)
    }

    pub async fn gw(&self, endpoint: &str, body: &Value) -> Value {
        request(&self.client, self.subject(&format!("gw.{endpoint}")), body).await
    }

    /// A merchant request on `merchant.<subject_merchant>.<endpoint>` with the given credentials.
    pub async fn merchant_as(
        &self,
        subject_merchant: i64,
        auth: Value,
        endpoint: &str,
        body: Value,
    ) -> Value {
        let body = merge(json!({ "merchant": auth }), body);
        request(
            &self.client,
            self.subject(&format!("merchant.{subject_merchant}.{endpoint}")),
            &body,
        )
        .await
    }

    /// One BIGINT (the column must be named `n`).
    pub fn number(&self, sql: &str) -> i64 {
        let rows = self.sql.lock().expect("sql").numbers(sql);
        assert_eq!(rows.len(), 1, "one row expected from {sql}");
        rows[0]
    }

    /// Text rows (the column must be named `v`).
    pub fn texts(&self, sql: &str) -> Vec<Option<String>> {
        self.sql.lock().expect("sql").texts(sql)
    }

    /// The sum of a counter over every label set, from each instance's `/metrics`.
    pub fn metric_per_instance(&self, name: &str) -> Vec<f64> {
        self.apps
            .iter()
            .map(|a| metric_sum(&a.metrics(), name))
            .collect()
    }
}

/// Sums every sample of `name` (any labels) in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Credentials of the demo merchant or of [`OTHER_MERCHANT`].
pub fn auth_of(merchant_id: i64) -> Value {
    if merchant_id == OTHER_MERCHANT {
        json!({"merchant_id": OTHER_MERCHANT.to_string(), "login": OTHER_LOGIN, "password": OTHER_PASSWORD})
    } else {
        merchant_auth()
    }
}

/// A signed order of `merchant_id` (both merchants share the demo signature key here).
pub fn order_of(merchant_id: i64, order_no: &str, amount: &str, customer: &str) -> Value {
    json!({
        "merchant_id": merchant_id.to_string(),
        "order_number": order_no,
        "order_amount": amount,
        "order_currency": "RUB",
        "customer_number": customer,
        "signature": sign(merchant_id, order_no, amount, "RUB", customer),
    })
}

/// A Luhn-valid 16-digit PAN starting with `prefix`, unique per `n`, that the simulator approves
/// (the first from `n` on whose last four are none of the simulator's decline/timeout endings).
pub fn test_pan(prefix: &str, n: u64) -> String {
    (n..)
        .map(|n| {
            let body = format!(
                "{prefix}{:0width$}",
                n % 10u64.pow(15 - prefix.len() as u32),
                width = 15 - prefix.len()
            );
            format!("{body}{}", luhn_digit(&body))
        })
        .find(|pan| {
            ![
                "0998", "0002", "0100", "0101", "0104", "0107", "0108", "0109", "0110",
            ]
            .contains(&&pan[12..])
        })
        .expect("some n fits")
}

/// The Luhn check digit of `body`.
pub fn luhn_digit(body: &str) -> u32 {
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).expect("digits");
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

// ---- card-data sweep ---------------------------------------------------------------------------

pub use super::card_scan::*;

/// [`postgres_values`] of the cluster's database, as haystacks.
pub fn database_haystacks(cluster: &Cluster) -> Vec<Haystack> {
    let Ok(values) = postgres_values(|sql| Ok::<_, std::convert::Infallible>(cluster.texts(sql)));
    haystacks_of(values)
}
