//! The engine test harness: a real [`Engine`] (customer actors, registry, vault actor, simulator
//! acquirer) over a real database, on SQLite or on the machine's PostgreSQL, with no mock of the
//! database.
//!
//! - [`TestDb`]: a fresh database per test. SQLite: a file in a fresh temporary directory.
//!   PostgreSQL: `CREATE DATABASE oneclick_t_<uuid>` through the admin URL of
//!   `ONECLICK_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped
//!   `WITH (FORCE)` on drop. An unreachable PostgreSQL fails the test with a message saying to run
//!   `scripts/test`; it is never skipped.
//! - [`Harness`]: migrates, seeds merchants [`A`] and [`B`] (separate unions, known signature keys,
//!   One Click on, mode standard, `need_cvc`, threshold 1, Europe/Moscow, RUB limits day 1000.00 /
//!   week 3000.00, a web-service user) and starts the engine with a [`RecordingAcquirer`] (the
//!   simulator, plus a log of what it was asked, without card data) so tests can tell whether the
//!   acquirer was asked at all. Helpers build signed orders, pay, list, delete, and read the
//!   database with raw SQL for assertions ("nothing stored": [`Harness::counts`]).
//! - [`both_backends!`]: one `async fn(h: Harness)` body becomes a module with two `#[test]`s,
//!   `on_sqlite` and `on_postgres`, each in its own actix System on a multi-threaded tokio runtime
//!   (docs/stack.md: plain `#[tokio::test]` panics with actix).
#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{PgConnection, SqliteConnection};
use futures::future::BoxFuture;

use oneclick_actors::acquirer::{Acquirer, AuthKind, AuthOutcome, AuthRequest, Simulator};
use oneclick_actors::crypto::{Keyring, MasterKey};
use oneclick_actors::domain::signature;
use oneclick_actors::engine::merchants::hash_password;
use oneclick_actors::engine::replies::*;
use oneclick_actors::engine::requests::*;
use oneclick_actors::engine::EngineResult;
use oneclick_actors::vault::merchants::{
    create_union, join_union, set_merchant_user, upsert_merchant, CreateUnion, JoinOutcome,
    JoinUnion, SetMerchantUser, UpsertMerchant,
};
use oneclick_actors::vault::{DatabaseUrl, Pool};
use oneclick_actors::{Engine, EngineSettings, Fault};

/// The first seeded merchant.
pub const A: i64 = 452739;
/// The second seeded merchant, in a union of its own (R17) until a test joins them.
pub const B: i64 = 452740;
/// Web-service user of both merchants.
pub const LOGIN: &str = "shop-api";
pub const PASSWORD: &str = "correct horse battery";

/// Simulator test cards (actors/src/acquirer.rs header).
pub const VISA_OK: &str = "4111111111111111";
pub const MASTERCARD_OK: &str = "5555555555554444";
pub const MIR_OK: &str = "2200000000000004";
pub const AMEX_OK: &str = "378282246310005";
/// Declined with AS102 (insufficient funds).
pub const VISA_DECLINED: &str = "4000000000000002";
/// Times out (AS998).
pub const VISA_TIMEOUT: &str = "4000000000060998";

/// A 3-digit CVC unlikely to appear as a value of its own anywhere (see `engine_card_data.rs`).
pub const CVC: &str = "847";

/// The signature key of a seeded merchant (raw bytes; stored base64).
pub fn signature_key(merchant_id: i64) -> Vec<u8> {
    format!("oneclick-test-signature-key-{merchant_id}").into_bytes()
}

/// The seeded settings of merchant `id`: enabled, standard, need_cvc, threshold 1, Moscow,
/// RUB day 1000.00 / week 3000.00.
pub fn merchant_settings(id: i64) -> UpsertMerchant {
    UpsertMerchant {
        id,
        name: format!("Test shop {id}"),
        oneclick_enabled: true,
        mode: "standard".into(),
        need_cvc: true,
        list_threshold: 1,
        time_zone: "Europe/Moscow".into(),
        signature_key: BASE64.encode(signature_key(id)),
        mit_cof: true,
        limits: vec![("RUB".into(), Some(100_000), Some(300_000))],
    }
}

/// The engine settings of the harness: small pools and a short cache so SQL changes made by a
/// test are seen after [`Harness::after_sql_change`].
pub fn test_settings() -> EngineSettings {
    EngineSettings {
        actor_idle: Duration::from_secs(300),
        max_actors: 100_000,
        registry_shards: 8,
        state_ttl: Duration::from_millis(100),
        credential_cache: Duration::from_secs(60),
        merchant_cache: Duration::from_secs(60),
        arbiters: 2,
        vault_workers: 4,
        group_commit_writers: 2,
        group_commit_max_batch: 64,
        in_doubt_after: Duration::from_secs(30),
        login: Default::default(),
    }
}

// ---- databases ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL admin URL tests create their databases from.
pub fn admin_url() -> String {
    std::env::var("ONECLICK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

fn admin_connection() -> PgConnection {
    let url = admin_url();
    PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at the admin URL from ONECLICK_TEST_DATABASE_URL (or the default \
             postgres://postgres@127.0.0.1:5432/postgres): {e}. Run the tests with `scripts/test`, which \
             starts a PostgreSQL with trust auth and sets ONECLICK_TEST_DATABASE_URL."
        )
    })
}

/// A fresh, empty database for one test; removed on drop.
pub struct TestDb {
    pub backend: Backend,
    /// What the engine connects to (`sqlite://…` or `postgres://…`).
    pub url: String,
    /// PostgreSQL: the database to drop.
    pg_name: Option<String>,
    /// SQLite: the directory holding the file.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("vault.db").display());
                TestDb {
                    backend,
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("oneclick_t_{}", uuid::Uuid::new_v4().simple());
                let mut admin = admin_connection();
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                TestDb {
                    backend,
                    url: with_database(&admin_url(), &name),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            // Best effort: a failed drop leaves a database behind, never fails the test.
            if let Ok(mut admin) = PgConnection::establish(&admin_url()) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }
}

/// A plain connection for the test's own SQL (assertions, simulated tampering).
pub enum RawConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(QueryableByName)]
struct NumberRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

impl RawConn {
    pub fn open(db: &TestDb) -> RawConn {
        match db.backend {
            Backend::Postgres => {
                RawConn::Pg(PgConnection::establish(&db.url).expect("connect to the test database"))
            }
            Backend::Sqlite => {
                let path = db.url.trim_start_matches("sqlite://");
                let mut c = SqliteConnection::establish(path).expect("open the test database");
                c.batch_execute("PRAGMA busy_timeout = 10000;")
                    .expect("busy_timeout");
                RawConn::Sqlite(c)
            }
        }
    }

    pub fn exec(&mut self, sql: &str) -> usize {
        let q = diesel::sql_query(sql);
        match self {
            RawConn::Pg(c) => q.execute(c),
            RawConn::Sqlite(c) => q.execute(c),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of a query whose only column is a BIGINT named `n`.
    pub fn numbers(&mut self, sql: &str) -> Vec<i64> {
        let q = diesel::sql_query(sql);
        let rows: Vec<NumberRow> = match self {
            RawConn::Pg(c) => q.load(c),
            RawConn::Sqlite(c) => q.load(c),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.n).collect()
    }

    /// Rows of a query whose only column is a (nullable) TEXT named `v`.
    pub fn texts(&mut self, sql: &str) -> Vec<Option<String>> {
        let q = diesel::sql_query(sql);
        let rows: Vec<TextRow> = match self {
            RawConn::Pg(c) => q.load(c),
            RawConn::Sqlite(c) => q.load(c),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.v).collect()
    }
}

/// Every table of the schema.
pub const TABLES: &[&str] = &[
    "unions",
    "merchants",
    "merchant_limits",
    "merchant_users",
    "customers",
    "cards",
    "recurring_agreements",
    "orders",
    "processed_commands",
];

// ---- the acquirer ------------------------------------------------------------------------------

/// What the acquirer was asked, without card data (only whether a CVC came along).
#[derive(Debug, Clone)]
pub struct AuthSeen {
    pub merchant_id: i64,
    pub order_number: String,
    pub amount_minor: i64,
    pub kind: AuthKind,
    pub had_cvc: bool,
    pub last4: String,
}

/// The deterministic simulator, recording every authorization it answers.
#[derive(Default)]
pub struct RecordingAcquirer {
    seen: Mutex<Vec<AuthSeen>>,
    /// How long each authorization takes (0 unless a test sets it).
    latency_ms: std::sync::atomic::AtomicU64,
}

impl RecordingAcquirer {
    /// Makes every later authorization wait `latency` (the simulator's latency).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<AuthSeen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> AuthSeen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the acquirer was asked")
    }
}

impl Acquirer for RecordingAcquirer {
    fn authorize(&self, req: AuthRequest) -> BoxFuture<'static, AuthOutcome> {
        let pan = req.pan.expose();
        self.seen.lock().unwrap().push(AuthSeen {
            merchant_id: req.merchant_id,
            order_number: req.order_number.clone(),
            amount_minor: req.amount_minor,
            kind: req.kind.clone(),
            had_cvc: req.cvc.is_some(),
            last4: pan[pan.len() - 4..].to_string(),
        });
        let latency = std::time::Duration::from_millis(self.latency_ms.load(Ordering::Relaxed));
        Simulator::new(latency).authorize(req)
    }

    fn name(&self) -> &'static str {
        "recording-simulator"
    }
}

// ---- the harness -------------------------------------------------------------------------------

/// argon2 is slow in debug builds: hash the test password once per process.
fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(PASSWORD).expect("argon2 hash"))
        .clone()
}

/// A running engine over a fresh database with merchants [`A`] and [`B`].
pub struct Harness {
    pub engine: Engine,
    pub acquirer: Arc<RecordingAcquirer>,
    pub keyring: Arc<Keyring>,
    /// The keyring's keys (version 1, fingerprint), base64, to build a rotated keyring.
    key_material: (String, String),
    pub backend: Backend,
    pub pool: Pool,
    orders: AtomicU64,
    sql: Mutex<RawConn>,
    // Last: dropped after the engine's pool.
    pub db: TestDb,
}

impl Harness {
    /// Fresh database, migrated and seeded; engine started. Must run inside an actix System.
    pub async fn start(backend: Backend) -> Harness {
        Harness::start_with(backend, test_settings()).await
    }

    pub async fn start_with(backend: Backend, settings: EngineSettings) -> Harness {
        let db = TestDb::new(backend);
        let url = DatabaseUrl::parse(&db.url).expect("database url");
        url.run_migrations().expect("migrations");
        let pool = url
            .pool((settings.vault_workers + settings.group_commit_writers) as u32 + 1)
            .expect("pool");
        let (key, fingerprint_key) = (MasterKey::generate(), MasterKey::generate());
        let key_material = (
            key.to_base64().to_string(),
            fingerprint_key.to_base64().to_string(),
        );
        let keyring = Arc::new(
            Keyring::new(vec![(1, key)], 1, fingerprint_key).expect("keyring of fresh keys"),
        );
        {
            let mut conn = pool.get().expect("connection");
            for id in [A, B] {
                upsert_merchant(&mut conn, &keyring, merchant_settings(id)).expect("seed merchant");
                set_merchant_user(
                    &mut conn,
                    &keyring,
                    SetMerchantUser {
                        merchant_id: id,
                        login: LOGIN.into(),
                        password_hash: password_hash(),
                    },
                )
                .expect("seed merchant user");
            }
        }
        let acquirer = Arc::new(RecordingAcquirer::default());
        let engine = Engine::start(settings, pool.clone(), keyring.clone(), acquirer.clone());
        let sql = Mutex::new(RawConn::open(&db));
        Harness {
            engine,
            acquirer,
            keyring,
            key_material,
            backend,
            pool,
            orders: AtomicU64::new(0),
            sql,
            db,
        }
    }

    /// The engine's keyring plus a new key, version 2, now current (as `oneclick admin keys add`
    /// makes it): what a rotation re-encrypts to.
    pub fn rotated_keyring(&self) -> Keyring {
        let key = |b64: &str| MasterKey::from_base64(b64).expect("key of this harness");
        Keyring::new(
            vec![(1, key(&self.key_material.0)), (2, MasterKey::generate())],
            2,
            key(&self.key_material.1),
        )
        .expect("rotated keyring")
    }

    /// A second engine (its own pool, vault workers, actors and caches) on the same database and
    /// keys, as a second oneclick process would be.
    pub fn another_engine(&self, settings: EngineSettings) -> Engine {
        let url = DatabaseUrl::parse(&self.db.url).expect("database url");
        let pool = url
            .pool((settings.vault_workers + settings.group_commit_writers) as u32 + 1)
            .expect("pool");
        Engine::start(settings, pool, self.keyring.clone(), self.acquirer.clone())
    }

    // ---- admin ----

    /// Replaces merchant `id`'s settings (starting from the seeded ones) and drops the engine's cache.
    pub fn update_merchant(&self, id: i64, change: impl FnOnce(&mut UpsertMerchant)) {
        let mut settings = merchant_settings(id);
        change(&mut settings);
        let mut conn = self.pool.get().expect("connection");
        upsert_merchant(&mut conn, &self.keyring, settings).expect("upsert merchant");
        self.engine.invalidate_merchant(id);
    }

    pub fn create_union(&self, kind: &str) -> i64 {
        let mut conn = self.pool.get().expect("connection");
        create_union(
            &mut conn,
            &self.keyring,
            CreateUnion {
                kind: kind.into(),
                name: format!("test {kind}"),
            },
        )
        .expect("create union")
    }

    pub fn join_union(&self, merchant_id: i64, union_id: i64) -> JoinOutcome {
        let mut conn = self.pool.get().expect("connection");
        let outcome = join_union(
            &mut conn,
            &self.keyring,
            JoinUnion {
                merchant_id,
                union_id,
            },
        )
        .expect("join union");
        self.engine.invalidate_merchant(merchant_id);
        outcome
    }

    /// Puts [`A`] and [`B`] into one new `legal_entity` union.
    pub fn join_a_and_b(&self) -> i64 {
        let union_id = self.create_union("legal_entity");
        assert!(matches!(
            self.join_union(A, union_id),
            JoinOutcome::Joined { .. }
        ));
        assert!(matches!(
            self.join_union(B, union_id),
            JoinOutcome::Joined { .. }
        ));
        union_id
    }

    // ---- raw SQL ----

    pub fn exec(&self, sql: &str) -> usize {
        self.sql.lock().unwrap().exec(sql)
    }

    /// One BIGINT (the column must be named `n`).
    pub fn number(&self, sql: &str) -> i64 {
        let rows = self.sql.lock().unwrap().numbers(sql);
        assert_eq!(rows.len(), 1, "one row expected from {sql}");
        rows[0]
    }

    /// Text rows (the column must be named `v`).
    pub fn texts(&self, sql: &str) -> Vec<Option<String>> {
        self.sql.lock().unwrap().texts(sql)
    }

    /// One text value (the column must be named `v`).
    pub fn text(&self, sql: &str) -> Option<String> {
        let rows = self.texts(sql);
        assert_eq!(rows.len(), 1, "one row expected from {sql}");
        rows.into_iter().next().flatten()
    }

    pub fn count_rows(&self, table: &str) -> i64 {
        self.number(&format!("SELECT COUNT(*) AS n FROM {table}"))
    }

    /// Row counts of every table, to assert that nothing was stored.
    pub fn counts(&self) -> BTreeMap<&'static str, i64> {
        TABLES.iter().map(|t| (*t, self.count_rows(t))).collect()
    }

    /// Lets the customer actors' caches expire after the test changed rows behind their back.
    pub async fn after_sql_change(&self) {
        actix::clock::sleep(test_settings().state_ttl * 2).await;
    }

    pub fn with_raw<R>(&self, f: impl FnOnce(&mut RawConn) -> R) -> R {
        f(&mut self.sql.lock().unwrap())
    }

    // ---- building requests ----

    /// A fresh order number.
    pub fn next_order(&self) -> String {
        format!("order-{}", self.orders.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The R2 signature of an order, over the values as given.
    pub fn sign(
        merchant_id: i64,
        order_number: &str,
        amount: &str,
        currency: &str,
        customer: &str,
    ) -> String {
        signature::sign(
            &signature_key(merchant_id),
            &signature::message(
                &merchant_id.to_string(),
                order_number,
                amount,
                currency,
                customer,
            ),
        )
    }

    /// A signed One Click order in RUB.
    pub fn order(
        &self,
        merchant_id: i64,
        order_number: &str,
        amount: &str,
        customer: &str,
    ) -> OrderInput {
        OrderInput {
            merchant_id,
            order_number: order_number.into(),
            amount: amount.into(),
            currency: "RUB".into(),
            customer_number: Some(customer.into()),
            signature: Some(Self::sign(
                merchant_id,
                order_number,
                amount,
                "RUB",
                customer,
            )),
        }
    }

    /// An order without a customer number (plain or recurring payment).
    pub fn plain_order(&self, merchant_id: i64, order_number: &str, amount: &str) -> OrderInput {
        OrderInput {
            merchant_id,
            order_number: order_number.into(),
            amount: amount.into(),
            currency: "RUB".into(),
            customer_number: None,
            signature: None,
        }
    }

    /// A card expiring 12.2030, held by IVAN PETROV, with the CVC when given.
    pub fn card(number: &str, cvc: Option<&str>) -> NewCardInput {
        NewCardInput {
            number: SecretString::new(number),
            expiry_month: "12".into(),
            expiry_year: "2030".into(),
            holder: "Ivan Petrov".into(),
            cvc: cvc.map(SecretString::new),
        }
    }

    // ---- commands ----

    pub async fn offer(&self, merchant_id: i64, customer: &str) -> EngineResult<Offer> {
        let order = self.order(merchant_id, &self.next_order(), "10.00", customer);
        self.engine.offer(OfferRequest { order }).await
    }

    /// Pays `amount` with a new card, answering the save offer with `save`.
    pub async fn pay_new(
        &self,
        merchant_id: i64,
        customer: &str,
        amount: &str,
        number: &str,
        save: Option<bool>,
    ) -> EngineResult<PaymentResult> {
        let order = self.order(merchant_id, &self.next_order(), amount, customer);
        self.engine
            .pay_new_card(PayNewCardRequest {
                order,
                card: Self::card(number, Some(CVC)),
                save,
                recurring: RecurringInput::default(),
            })
            .await
    }

    /// A recurring initial payment of 50.00 by `number` (no customer), agreeing to charges of
    /// 10.00–500.00 every 30 days until 31.12.2030 (R15); returns its order number.
    pub async fn start_agreement(&self, merchant_id: i64, number: &str, cvc: &str) -> String {
        let initial = self.next_order();
        let started = self
            .engine
            .pay_new_card(PayNewCardRequest {
                order: self.plain_order(merchant_id, &initial, "50.00"),
                card: Self::card(number, Some(cvc)),
                save: None,
                recurring: RecurringInput {
                    indicator: Some("1".into()),
                    min_amount: Some("10.00".into()),
                    max_amount: Some("500.00".into()),
                    period_days: Some("30".into()),
                    max_date: Some("31.12.2030".into()),
                },
            })
            .await
            .expect("recurring initial payment");
        assert!(started.is_approved(), "{started:?}");
        initial
    }

    /// Pays with a new card and agrees to save it; returns the saved card's token.
    pub async fn save_card(&self, merchant_id: i64, customer: &str, number: &str) -> String {
        let paid = self
            .pay_new(merchant_id, customer, "100.00", number, None)
            .await
            .expect("payment");
        assert!(paid.is_approved(), "{paid:?}");
        assert!(paid.card_saved, "{paid:?}");
        paid.token.expect("token of the saved card")
    }

    pub async fn register(
        &self,
        merchant_id: i64,
        customer: &str,
        number: &str,
    ) -> EngineResult<PaymentResult> {
        let order = self.order(merchant_id, &self.next_order(), "0", customer);
        self.engine
            .register(RegisterRequest {
                order,
                card: Self::card(number, Some(CVC)),
            })
            .await
    }

    pub async fn pay_saved(
        &self,
        merchant_id: i64,
        customer: &str,
        amount: &str,
        token: &str,
        cvc: Option<&str>,
    ) -> EngineResult<PaymentResult> {
        let order = self.order(merchant_id, &self.next_order(), amount, customer);
        self.engine
            .pay_saved_card(PaySavedCardRequest {
                order,
                token: token.into(),
                cvc: cvc.map(SecretString::new),
            })
            .await
    }

    pub async fn token_pay(
        &self,
        merchant_id: i64,
        customer: &str,
        amount: &str,
        token: &str,
    ) -> EngineResult<PaymentResult> {
        let mut order = self.order(merchant_id, &self.next_order(), amount, customer);
        order.signature = None;
        self.engine
            .token_pay(TokenPayRequest {
                order,
                token_type: 5,
                token: token.into(),
            })
            .await
    }

    pub async fn token_list(
        &self,
        merchant_id: i64,
        customer: &str,
    ) -> EngineResult<Vec<TokenListEntry>> {
        self.engine
            .token_list(TokenListRequest {
                merchant_id,
                customer_number: customer.into(),
            })
            .await
    }

    pub async fn delete(
        &self,
        merchant_id: i64,
        customer: &str,
        token: &str,
        command_id: Option<&str>,
    ) -> EngineResult<TokenRemoved> {
        self.engine
            .delete_card(DeleteCardRequest {
                merchant_id,
                customer_number: customer.into(),
                token: token.into(),
                command_id: command_id.map(str::to_string),
                actor: AuditActor::merchant(merchant_id, LOGIN),
            })
            .await
    }

    pub async fn set_status(
        &self,
        merchant_id: i64,
        customer: &str,
        status: &str,
        command_id: Option<&str>,
    ) -> EngineResult<StatusChanged> {
        self.engine
            .set_status(SetStatusRequest {
                merchant_id,
                customer_number: customer.into(),
                status: status.into(),
                command_id: command_id.map(str::to_string),
                actor: AuditActor::merchant(merchant_id, LOGIN),
            })
            .await
    }

    /// The personal-account view; an empty `search` lists every customer of the union.
    pub async fn customer_page(&self, merchant_id: i64, search: &str) -> CustomerPage {
        let search = (!search.is_empty()).then(|| search.to_string());
        self.engine
            .list_customers(ListCustomersRequest {
                merchant_id,
                search,
                offset: 0,
                limit: 50,
                after: None,
            })
            .await
            .expect("customer list")
    }
}

/// The fault of a failed command; panics with the result when it did not fail.
pub fn fault_of<T: std::fmt::Debug>(result: EngineResult<T>) -> Fault {
    match result {
        Ok(v) => panic!("expected a fault, got {v:?}"),
        Err(e) => e.fault(),
    }
}

/// Runs one test body in a fresh actix System (multi-threaded tokio runtime) against `backend`.
pub fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    run_with(backend, test_settings(), test)
}

/// Runs `body` on a harness with `settings` over a fresh `backend` database, in a fresh actix
/// System (multi-threaded tokio runtime), and returns what it returned.
pub fn run_with<F, Fut, R>(backend: Backend, settings: EngineSettings, body: F) -> R
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = R>,
{
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    system.block_on(async move {
        let h = Harness::start_with(backend, settings).await;
        let out = body(h).await;
        actix::System::current().stop();
        out
    })
}

/// Runs test bodies on both backends. Each `async fn name(h: Harness)` becomes a module `name`
/// with two tests, `name::on_sqlite` and `name::on_postgres`. Two forms:
///
/// - `both_backends!(name_a, name_b);` for `async fn`s written outside the macro (so rustfmt
///   formats them; a body left out of the list is reported as an unused function);
/// - `both_backends! { async fn name(h: Harness) { … } … }` with the bodies inside.
#[macro_export]
macro_rules! both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($h:ident : Harness) $body:block)+) => {
        $(
            $(#[$meta])*
            async fn $name($h: $crate::engine::Harness) $body
            $crate::both_backends!($name);
        )+
    };
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn on_sqlite() {
                    $crate::engine::run($crate::engine::Backend::Sqlite, super::$name);
                }

                #[test]
                fn on_postgres() {
                    $crate::engine::run($crate::engine::Backend::Postgres, super::$name);
                }
            }
        )+
    };
}
