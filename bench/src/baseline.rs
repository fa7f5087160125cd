//! The machine's own limits, measured in the same run, at the same concurrency:
//!
//! 1. **NATS request-reply** to a trivial echo responder (a tokio subscriber in this process, on
//!    the same private nats-server), with the request and reply sizes oneclick's scenario had.
//! 2. **The database doing a payment's writes with the engine's own statements**, one transaction
//!    per payment, with the same merchant settings as the measured path (the turnover read only
//!    when the merchant has limits), driven directly by
//!    `concurrency` clients (one OS thread and one connection each) against a scratch database
//!    with oneclick's schema (migrated by `oneclick admin migrate`) and the same number of
//!    customers and cards (bulk seeded). The statements are the engine's own prepared statements
//!    (`vault/prepared.rs`: prepared once per connection, then only bound and executed), and the
//!    limit query through the same Diesel query builder:
//!    `BEGIN; UPDATE customers SET version = version + 1 WHERE id = $1;
//!     [limits on:] SELECT amount, created_at FROM orders WHERE customer_id = $1 AND currency = 'RUB'
//!       AND counts_for_limits AND created_at >= $2;
//!     INSERT INTO orders (…) VALUES (…) ON CONFLICT DO NOTHING RETURNING id;
//!     UPDATE orders SET state = 'Approved', response_code = 'AS000', counts_for_limits = counts_for_limits AND true, … WHERE id = $3 AND state = 'In Process';
//!     UPDATE cards SET success_count = success_count + 1, last_used_at = $4 WHERE id = $5;
//!     COMMIT`.
//!    The plain service a user would write instead (no engine statements) is `pgbench.rs`.
//! 3. **SQLite**: the same loop on a scratch file opened with the engine's own connection
//!    settings (`DatabaseUrl::connect`: WAL, `synchronous = FULL`, `busy_timeout`). SQLite runs
//!    inside its client, so its CPU is this process's.
//! 4. **The disk**: one writer rewriting 8 KiB and `fdatasync`-ing it in a loop (what
//!    `pg_test_fsync` measures): every durable commit waits for one of these, so its latency
//!    bounds a customer's serial payments and explains most run-to-run drift on a shared VM.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use diesel::prelude::*;
use futures::StreamExt as _;
use oneclick_actors::vault::prepared;
use oneclick_actors::vault::schema::orders;
use oneclick_actors::vault::{AnyConnection, DatabaseUrl};

use crate::rng::{KeyPicker, Rng};
use crate::scenario::{Kind, Request};
use crate::stack::MERCHANT_ID;

pub const ECHO_SUBJECT: &str = "benchecho.v1.echo";

/// The echo responder: its own connection, answers every request with the current reply body.
pub struct Echo {
    reply: Arc<std::sync::RwLock<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start(nats_url: &str) -> anyhow::Result<Echo> {
        let client = async_nats::connect(nats_url).await?;
        let mut sub = client.subscribe(ECHO_SUBJECT).await?;
        client.flush().await?;
        let reply = Arc::new(std::sync::RwLock::new(Bytes::from_static(b"{}")));
        let current = reply.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Some(to) = msg.reply {
                    let body = current.read().map(|b| b.clone()).unwrap_or_default();
                    let _ = client.publish(to, body).await;
                }
            }
        });
        Ok(Echo { reply, task })
    }

    /// Sets the reply body (the size of the scenario's replies).
    pub fn set_reply(&self, body: Bytes) {
        if let Ok(mut r) = self.reply.write() {
            *r = body;
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON-looking body of `len` bytes.
pub fn filler(len: usize) -> Bytes {
    let mut v = b"{\"x\":\"".to_vec();
    while v.len() + 2 < len {
        v.push(b'a');
    }
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

pub fn echo_request(body: Bytes) -> Request {
    Request {
        kind: Kind::Echo,
        subject: ECHO_SUBJECT.to_string(),
        body,
    }
}

/// The stored reply of a payment, about the size of oneclick's `PaymentReply`.
const RESULT_JSON: &str = r#"{"merchant_id":452739,"order_number":"b-1-1","kind":"saved_card","order_state":"Approved","response_code":"AS000","message":"Approved","order_amount":"1.00","order_currency":"RUB","card":{"number":"411111******1111","brand":"VISA","expire":"12.2030","holder":"IVAN IVANOV"},"token":"6C1F6F8E-0B7A-4C43-9B43-3A1C1E1D2F10","card_saved":false}"#;

/// One payment, one transaction (see the module header).
fn pay_once(
    conn: &mut AnyConnection,
    customer_id: i64,
    card_id: i64,
    order_number: &str,
    digest: &[u8; 32],
    limits: bool,
) -> QueryResult<()> {
    conn.transaction(|c| pay_statements(c, customer_id, card_id, order_number, digest, limits))
}

/// A payment's statements, inside the caller's transaction or savepoint.
fn pay_statements(
    c: &mut AnyConnection,
    customer_id: i64,
    card_id: i64,
    order_number: &str,
    digest: &[u8; 32],
    limits: bool,
) -> QueryResult<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let since = now - 7 * 86_400_000;
    {
        let lock = prepared::BumpCustomerId { id: customer_id };
        oneclick_actors::on_backend!(&mut *c, |b| lock.execute(b))?;
        if limits {
            let used: Vec<(i64, i64)> = orders::table
                .filter(orders::customer_id.eq(customer_id))
                .filter(orders::currency.eq("RUB"))
                .filter(orders::counts_for_limits.eq(true))
                .filter(orders::created_at.ge(since))
                .select((orders::amount, orders::created_at))
                .load(c)?;
            std::hint::black_box(used.iter().map(|(a, _)| a).sum::<i64>());
        }
        let insert = prepared::InsertOrder {
            merchant_id: MERCHANT_ID,
            order_number,
            kind: "saved_card",
            customer_id: Some(customer_id),
            card_id: Some(card_id),
            agreement_id: None,
            amount: 100,
            currency: "RUB",
            state: "In Process",
            response_code: "AS300",
            counts_for_limits: true,
            request_digest: digest,
            result_json: None,
            now_ms: now,
        };
        let order_id: i64 = oneclick_actors::on_backend!(&mut *c, |b| insert.get_result(b))?;
        let claim = prepared::ClaimOrder {
            id: order_id,
            state: "Approved",
            response_code: "AS000",
            keep_reservation: true,
            card_id: Some(card_id),
            network_tx_id: None,
            result_json: Some(RESULT_JSON),
            now_ms: now,
        };
        oneclick_actors::on_backend!(&mut *c, |b| claim.execute(b))?;
        let count = prepared::CountCardUse {
            id: card_id,
            now_ms: now,
        };
        oneclick_actors::on_backend!(&mut *c, |b| count.execute(b))?;
        Ok(())
    }
}

/// Requester `worker` of the database baseline: its own connection, its own key stream.
pub fn db_worker(
    database_url: &str,
    ids: Arc<Vec<(i64, i64)>>,
    picker: Arc<KeyPicker>,
    tag: &str,
    worker: usize,
    limits: bool,
) -> anyhow::Result<Box<dyn FnMut() -> Option<String> + Send>> {
    let mut conn = DatabaseUrl::parse(database_url)?.connect()?;
    let mut rng = Rng::new(worker as u64 * 7919 + 17);
    let tag = tag.to_string();
    let digest = [7u8; 32];
    let mut seq = 0u64;
    Ok(Box::new(move || {
        seq += 1;
        let (customer_id, card_id) = ids[picker.pick(&mut rng) % ids.len().max(1)];
        match pay_once(
            &mut conn,
            customer_id,
            card_id,
            &format!("{tag}-{worker}-{seq}"),
            &digest,
            limits,
        ) {
            Ok(()) => None,
            Err(e) => Some(format!("database: {e}")),
        }
    }))
}

/// Worker `worker` of `workers` for the database's own group-commit ceiling: `group` payments
/// per transaction, each in its own savepoint (as the engine's writers run them: one round trip
/// `RELEASE SAVEPOINT step; SAVEPOINT step` between payments), the same statements as
/// [`db_worker`]. Worker `w` takes customers `w`, `w + workers`, … in turn, so a transaction
/// never holds one customer twice and workers never wait for each other's row locks. One call
/// is one transaction: the caller counts `group` payments for it.
pub fn db_group_worker(
    database_url: &str,
    ids: Arc<Vec<(i64, i64)>>,
    workers: usize,
    group: usize,
    tag: &str,
    worker: usize,
    limits: bool,
) -> anyhow::Result<Box<dyn FnMut() -> Option<String> + Send>> {
    use diesel::connection::SimpleConnection as _;
    let mut conn = DatabaseUrl::parse(database_url)?.connect()?;
    let tag = tag.to_string();
    let digest = [7u8; 32];
    let own = (ids.len() / workers.max(1)).max(1);
    let mut seq = 0usize;
    Ok(Box::new(move || {
        let result = conn.transaction(|c| {
            for i in 0..group {
                c.batch_execute(if i == 0 {
                    "SAVEPOINT step"
                } else {
                    "RELEASE SAVEPOINT step; SAVEPOINT step"
                })?;
                seq += 1;
                let (customer_id, card_id) = ids[(worker + workers * (seq % own)) % ids.len()];
                pay_statements(
                    c,
                    customer_id,
                    card_id,
                    &format!("{tag}-g{worker}-{seq}"),
                    &digest,
                    limits,
                )?;
            }
            Ok::<_, diesel::result::Error>(())
        });
        result.err().map(|e| format!("database: {e}"))
    }))
}

/// The fsync loop's worker: rewrite 8 KiB at offset 0 of `dir/fsync-probe`, then `fdatasync`.
pub fn fsync_worker(dir: &Path) -> anyhow::Result<Box<dyn FnMut() -> Option<String> + Send>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("fsync-probe"))?;
    let block = vec![0x5au8; 8192];
    Ok(Box::new(move || {
        let r = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&block))
            .and_then(|_| file.sync_data());
        r.err().map(|e| format!("fsync: {e}"))
    }))
}
