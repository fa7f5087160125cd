//! Issue 14's prototype: how a batch of saved-card payments should reach PostgreSQL.
//!
//! A saved-card payment writes twice: its reservation (the engine's `ReserveSavedCard`: the
//! customer's lock, its card `FOR SHARE`, the turnover of the limits' windows, the order
//! `In Process`) and, after the acquirer, its claim (`ClaimOrderCountingCard`: the final state
//! and the card's counter). The engine's writers group the steps of many customers into one
//! transaction. Three ways to send such a batch of `B` steps, measured here side by side on the
//! same server, transport, schema and rows:
//!
//! - **rows** (what the engine did before it chose set-based): `BEGIN`, one statement per step, `COMMIT`, each
//!   statement waiting for the previous one's answer: `B + 2` round trips (a lone step: one
//!   statement, no transaction);
//! - **pipelined**: the very same statements, sent without waiting over diesel-async's
//!   `AsyncPgConnection` (futures polled together; tokio-postgres writes them out back to back):
//!   one network flight per batch, the server still parses, binds and runs `B + 2` statements;
//! - **set-based**: one statement per step kind for the whole batch, its rows passed as arrays
//!   (`unnest … WITH ORDINALITY`), an outcome per row instead of a savepoint: one statement,
//!   one round trip, and it is its own transaction.
//!
//! Each worker is one writer: its own connection, batches of `B` distinct customers back to back
//! (reservations, then their claims), customers split between workers so no two batches ever
//! wait for the same row, as the engine's actors guarantee. Every reservation reads the
//! turnover (limits on). Only the database work is measured: the card is not decrypted, no
//! reply is built (the same in all three). The transport is TCP without TLS for all three
//! (diesel-async connects with `NoTls`), so the modes differ only in how the batch is sent.
//!
//! The set-based statements are the engine's own (`actors/src/vault/batch.rs`): the group
//! commit runs them on PostgreSQL since this prototype chose them.

use std::sync::Arc;

use diesel::QueryResult;
use oneclick_actors::vault::batch::{ClaimOrdersCountingCards, ReserveSavedCards, ReservedRow};
use oneclick_actors::vault::payments::SavedCardRow as Reserved;
use oneclick_actors::vault::prepared;

use crate::stack::MERCHANT_ID;

/// How a batch is sent (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rows,
    Pipelined,
    SetBased,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Rows, Mode::Pipelined, Mode::SetBased];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rows => "rows",
            Mode::Pipelined => "pipelined",
            Mode::SetBased => "set-based",
        }
    }

    /// Statements the server runs and network round trips the writer waits for, per batch of
    /// `b` steps of one kind.
    pub fn cost(self, b: usize) -> (usize, usize) {
        match (self, b) {
            (_, 0 | 1) => (1, 1),
            (Mode::Rows, b) => (b + 2, b + 2),
            (Mode::Pipelined, b) => (b + 2, 1),
            (Mode::SetBased, _) => (1, 1),
        }
    }
}

/// One seeded customer as the reservation names it.
pub struct Payer {
    pub union_id: i64,
    pub number: String,
    pub token: String,
}

/// The reply stored by a claim: about the size of oneclick's `PaymentReply`.
const RESULT_JSON: &str = r#"{"merchant_id":452739,"order_number":"b-1-1","kind":"saved_card","order_state":"Approved","response_code":"AS000","message":"Approved","order_amount":"1.00","order_currency":"RUB","card":{"number":"411111******1111","brand":"VISA","expire":"12.2030","holder":"IVAN IVANOV"},"token":"6C1F6F8E-0B7A-4C43-9B43-3A1C1E1D2F10","card_saved":false}"#;

/// One payment of a batch: its customer and order number.
struct Step<'a> {
    payer: &'a Payer,
    order_number: String,
}

/// The limits' windows, as a reservation with limits passes them.
#[derive(Clone, Copy)]
struct Windows {
    now: i64,
    since: i64,
    day_start: i64,
    week_start: i64,
}

impl Windows {
    fn now() -> Windows {
        let now = chrono::Utc::now().timestamp_millis();
        Windows {
            now,
            since: now - 7 * 86_400_000,
            day_start: now - 86_400_000,
            week_start: now - 7 * 86_400_000,
        }
    }
}

const DIGEST: [u8; 32] = [7u8; 32];

fn reserve_one<'a>(s: &'a Step<'a>, w: Windows) -> prepared::ReserveSavedCard<'a> {
    prepared::ReserveSavedCard {
        union_id: s.payer.union_id,
        customer_number: &s.payer.number,
        token: &s.payer.token,
        merchant_id: MERCHANT_ID,
        order_number: &s.order_number,
        kind: "saved_card",
        counts_for_limits: true,
        amount: 100,
        currency: "RUB",
        request_digest: &DIGEST,
        now_ms: w.now,
        limited: true,
        since: w.since,
        day_start: w.day_start,
        week_start: w.week_start,
    }
}

fn claim_one(order_id: i64, card_id: i64, now: i64) -> prepared::ClaimOrderCountingCard<'static> {
    prepared::ClaimOrderCountingCard {
        id: order_id,
        state: "Approved",
        response_code: "AS000",
        keep_reservation: true,
        card_id: Some(card_id),
        network_tx_id: None,
        result_json: Some(RESULT_JSON),
        count_card: true,
        now_ms: now,
    }
}

/// The order and card a reservation returned, or why it cannot be claimed.
fn claimable(r: &Reserved) -> Result<(i64, i64), String> {
    match (r.6, &r.2) {
        (Some(order), Some(card)) => Ok((order, card.id)),
        _ => Err(format!(
            "reservation inserted no order (fresh {}, card {})",
            r.7,
            r.2.is_some()
        )),
    }
}

// ---- the three writers ---------------------------------------------------------------------

/// A URL with TLS turned off, for the synchronous modes (diesel-async connects without TLS).
pub fn without_tls(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode=disable")
}

/// Worker `worker` of `workers`: one connection, batches of `batch` payments of customers
/// `worker`, `worker + workers`, … in turn. One call is one batch (its reservations, then its
/// claims): the caller counts `batch` payments for it.
pub fn worker(
    mode: Mode,
    database_url: &str,
    payers: Arc<Vec<Payer>>,
    workers: usize,
    batch: usize,
    tag: &str,
    worker: usize,
) -> anyhow::Result<Box<dyn FnMut() -> Option<String> + Send>> {
    let own = (payers.len() / workers.max(1)).max(1);
    anyhow::ensure!(
        own >= batch,
        "{} customers are too few for {workers} writers of batches of {batch}",
        payers.len()
    );
    let tag = tag.to_string();
    let mut seq = 0usize;
    let mut next_steps = move |payers: &Arc<Vec<Payer>>| -> Vec<(usize, String)> {
        (0..batch)
            .map(|_| {
                seq += 1;
                let i = (worker + workers * (seq % own)) % payers.len();
                (i, format!("{tag}-{worker}-{seq}"))
            })
            .collect()
    };
    match mode {
        Mode::Rows | Mode::SetBased => {
            let mut conn = diesel::pg::PgConnection::establish_url(&without_tls(database_url))?;
            Ok(Box::new(move || {
                let picks = next_steps(&payers);
                let steps: Vec<Step> = picks
                    .iter()
                    .map(|(i, n)| Step {
                        payer: &payers[*i],
                        order_number: n.clone(),
                    })
                    .collect();
                let r = if mode == Mode::Rows {
                    rows_batch(&mut conn, &steps)
                } else {
                    set_batch(&mut conn, &steps)
                };
                r.err()
            }))
        }
        Mode::Pipelined => {
            // Built on a thread of its own: the caller may be inside a tokio runtime, where
            // `block_on` is not allowed.
            let url = without_tls(database_url);
            let (rt, conn) = std::thread::spawn(move || -> anyhow::Result<_> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let conn = rt.block_on(pipelined::connect(&url))?;
                Ok((rt, conn))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the pipelined writer's set-up panicked"))??;
            Ok(Box::new(move || {
                let picks = next_steps(&payers);
                let steps: Vec<Step> = picks
                    .iter()
                    .map(|(i, n)| Step {
                        payer: &payers[*i],
                        order_number: n.clone(),
                    })
                    .collect();
                rt.block_on(pipelined::batch(&conn, &steps)).err()
            }))
        }
    }
}

/// Connecting, named so the worker reads plainly.
trait EstablishUrl: Sized {
    fn establish_url(url: &str) -> anyhow::Result<Self>;
}

impl EstablishUrl for diesel::pg::PgConnection {
    fn establish_url(url: &str) -> anyhow::Result<Self> {
        use diesel::Connection as _;
        Ok(diesel::pg::PgConnection::establish(url)?)
    }
}

/// Today's engine: `BEGIN`, a statement a step, `COMMIT` (a lone step: its statement alone).
fn rows_batch(conn: &mut diesel::pg::PgConnection, steps: &[Step]) -> Result<(), String> {
    use diesel::{Connection as _, RunQueryDsl as _};
    let w = Windows::now();
    let in_tx = |conn: &mut diesel::pg::PgConnection,
                 f: &mut dyn FnMut(&mut diesel::pg::PgConnection) -> QueryResult<()>|
     -> Result<(), String> {
        if steps.len() == 1 {
            f(conn).map_err(|e| e.to_string())
        } else {
            conn.transaction(|c| f(c)).map_err(|e| e.to_string())
        }
    };
    let mut reserved = Vec::with_capacity(steps.len());
    in_tx(conn, &mut |c| {
        reserved.clear();
        for s in steps {
            reserved.push(reserve_one(s, w).get_result::<Reserved>(c)?);
        }
        Ok(())
    })?;
    let claims = reserved
        .iter()
        .map(claimable)
        .collect::<Result<Vec<_>, _>>()?;
    let mut claimed = 0;
    in_tx(conn, &mut |c| {
        claimed = 0;
        for &(order, card) in &claims {
            claimed += claim_one(order, card, w.now).get_result::<i64>(c)?;
        }
        Ok(())
    })?;
    expect_claimed(claimed as usize, steps.len())
}

fn expect_claimed(claimed: usize, steps: usize) -> Result<(), String> {
    if claimed == steps {
        Ok(())
    } else {
        Err(format!("{claimed} of {steps} orders claimed"))
    }
}

/// One statement per step kind: all reservations, then all claims (each its own transaction).
fn set_batch(conn: &mut diesel::pg::PgConnection, steps: &[Step]) -> Result<(), String> {
    use diesel::RunQueryDsl as _;
    let w = Windows::now();
    let rows: Vec<ReservedRow> = reserve_set(steps, w)
        .load(conn)
        .map_err(|e| e.to_string())?;
    let claims = claims_of(rows, steps.len())?;
    let claimed: Vec<i64> = claim_set(&claims, w.now)
        .load(conn)
        .map_err(|e| e.to_string())?;
    expect_claimed(claimed.len(), steps.len())
}

fn reserve_set<'a>(steps: &'a [Step<'a>], w: Windows) -> ReserveSavedCards<'a> {
    let n = steps.len();
    ReserveSavedCards {
        union_id: steps.iter().map(|s| s.payer.union_id).collect(),
        customer_number: steps.iter().map(|s| s.payer.number.as_str()).collect(),
        token: steps.iter().map(|s| s.payer.token.as_str()).collect(),
        merchant_id: vec![MERCHANT_ID; n],
        order_number: steps.iter().map(|s| s.order_number.as_str()).collect(),
        kind: vec!["saved_card"; n],
        counts_for_limits: vec![true; n],
        amount: vec![100; n],
        currency: vec!["RUB"; n],
        request_digest: vec![&DIGEST[..]; n],
        limited: vec![true; n],
        since: vec![w.since; n],
        day_start: vec![w.day_start; n],
        week_start: vec![w.week_start; n],
        now_ms: vec![w.now; n],
    }
}

/// The (order, card) pairs to claim, from the set-based reservation's rows (one per step, in
/// order).
fn claims_of(rows: Vec<ReservedRow>, steps: usize) -> Result<Vec<(i64, i64)>, String> {
    if rows.len() != steps {
        return Err(format!("{} reservation rows for {steps} steps", rows.len()));
    }
    rows.into_iter()
        .enumerate()
        .map(
            |(i, (n, (_c, _f, card, _blob, _v, _a, order, fresh, _d, _w)))| {
                if n != i as i64 + 1 {
                    return Err(format!("row {n} where {} was due", i + 1));
                }
                match (order, card) {
                    (Some(order), Some(card)) => Ok((order, card.id)),
                    (_, card) => Err(format!(
                        "reservation inserted no order (fresh {fresh}, card {})",
                        card.is_some()
                    )),
                }
            },
        )
        .collect()
}

fn claim_set(claims: &[(i64, i64)], now: i64) -> ClaimOrdersCountingCards<'static> {
    let n = claims.len();
    ClaimOrdersCountingCards {
        id: claims.iter().map(|c| c.0).collect(),
        state: vec!["Approved"; n],
        response_code: vec!["AS000"; n],
        keep_reservation: vec![true; n],
        card_id: claims.iter().map(|c| Some(c.1)).collect(),
        network_tx_id: vec![None; n],
        result_json: vec![Some(RESULT_JSON); n],
        count_card: vec![true; n],
        now_ms: vec![now; n],
    }
}

/// The pipelined writer: diesel-async's `AsyncPgConnection` (tokio-postgres underneath).
mod pipelined {
    use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    use futures::future::try_join_all;

    use super::{claim_one, claimable, expect_claimed, reserve_one, Reserved, Step, Windows};

    pub async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
        Ok(AsyncPgConnection::establish(url).await?)
    }

    /// `BEGIN`, every step's statement and `COMMIT` polled together: written out back to back,
    /// answered in order. A failed statement fails the futures after it (the transaction is
    /// aborted and `COMMIT` rolls it back), as a failed step does in the engine's batch today.
    pub async fn batch(conn: &AsyncPgConnection, steps: &[Step<'_>]) -> Result<(), String> {
        use diesel_async::SimpleAsyncConnection as _;
        let w = Windows::now();
        let statements: Vec<_> = steps.iter().map(|s| reserve_one(s, w)).collect();
        let reserved: Vec<Reserved> = if steps.len() == 1 {
            vec![statements[0]
                .get_result::<Reserved>(&mut &*conn)
                .await
                .map_err(|e| e.to_string())?]
        } else {
            let mut begin = conn;
            let mut commit = conn;
            let all = futures::try_join!(
                begin.batch_execute("BEGIN"),
                try_join_all(statements.iter().map(|q| {
                    let mut c = conn;
                    async move { q.get_result::<Reserved>(&mut c).await }
                })),
                commit.batch_execute("COMMIT"),
            )
            .map_err(|e| e.to_string());
            match all {
                Ok((_, rows, _)) => rows,
                Err(e) => {
                    let _ = (&mut &*conn).batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
        };
        let claims = reserved
            .iter()
            .map(claimable)
            .collect::<Result<Vec<_>, _>>()?;
        let statements: Vec<_> = claims
            .iter()
            .map(|&(order, card)| claim_one(order, card, w.now))
            .collect();
        let claimed: i64 = if steps.len() == 1 {
            statements[0]
                .get_result::<i64>(&mut &*conn)
                .await
                .map_err(|e| e.to_string())?
        } else {
            let mut begin = conn;
            let mut commit = conn;
            let all = futures::try_join!(
                begin.batch_execute("BEGIN"),
                try_join_all(statements.iter().map(|q| {
                    let mut c = conn;
                    async move { q.get_result::<i64>(&mut c).await }
                })),
                commit.batch_execute("COMMIT"),
            )
            .map_err(|e| e.to_string());
            match all {
                Ok((_, counts, _)) => counts.iter().sum(),
                Err(e) => {
                    let _ = (&mut &*conn).batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
        };
        expect_claimed(claimed as usize, steps.len())
    }
}

// ---- the measurement -----------------------------------------------------------------------

/// Runs the prototype: a scratch PostgreSQL database (oneclick's schema, `--customers` bulk
/// seeded), then for each batch size every mode, `--batching-writers` writers each. Returns the
/// records (one payment = one request) and a summary table.
pub async fn prototype(
    env: &mut crate::Env,
) -> anyhow::Result<(Vec<crate::report::Record>, String)> {
    use anyhow::Context as _;
    use diesel::prelude::*;
    use oneclick_actors::vault::schema::merchants;
    use std::fmt::Write as _;

    let backend = crate::stack::BackendKind::Postgres;
    let writers = env.args.batching_writers.max(1);
    let mut sizes = env.args.batching.clone();
    sizes.retain(|b| *b > 0);
    sizes.sort_unstable();
    sizes.dedup();
    let largest = sizes.last().copied().unwrap_or(1);
    // Every writer needs `batch` customers of its own per batch; twice that keeps a customer's
    // consecutive payments in different batches.
    let customers = env.args.customers.max(2 * writers * largest);
    eprintln!("== batching prototype: scratch database, {customers} customers");
    let (db, app) = env.prepare(backend, "postgres-batching")?;
    let seeded = crate::bulk_seed(&db.url, &app.keys_file, customers).await?;
    let union_id: i64 = {
        let mut conn = diesel::pg::PgConnection::establish_url(&without_tls(&db.url))?;
        merchants::table
            .find(MERCHANT_ID)
            .select(merchants::union_id)
            .first(&mut conn)
            .context("the demo merchant")?
    };
    let payers: Arc<Vec<Payer>> = Arc::new(
        seeded
            .customers
            .into_iter()
            .map(|c| Payer {
                union_id,
                number: c.number,
                token: c.token,
            })
            .collect(),
    );
    let probe = env.probe(None, &db);
    let window = env.window();
    let url = db.url.clone();
    // A history of orders before the first window: analysed empty, `orders` would be planned
    // as a table to scan whole, and the first window would measure that plan (seen: 2.5 ms of
    // PostgreSQL CPU per payment in it, 0.5 ms in the next).
    {
        let (url, payers, tag) = (url.clone(), payers.clone(), env.next_tag());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut prime = worker(Mode::Rows, &url, payers.clone(), 1, 1, &tag, 0)?;
            for _ in 0..payers.len().min(1000) {
                if let Some(e) = prime() {
                    anyhow::bail!("priming the orders: {e}");
                }
            }
            Ok(())
        })
        .await??;
    }
    let mut records = Vec::new();
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "{:<10} {:>3} {:>9} {:>8} {:>8} | {:>9} {:>9} {:>9} | {:>11} {:>9}",
        "mode",
        "B",
        "paym/s",
        "p50 ms",
        "p99 ms",
        "µs writer",
        "µs db",
        "µs total",
        "stmts/batch",
        "rt/batch"
    );
    for (round, &batch) in sizes.iter().enumerate() {
        // The modes take turns at going first, so none always meets the warmest cache.
        let mut modes = Mode::ALL;
        let first = round % modes.len();
        modes.rotate_left(first);
        for mode in modes {
            // Every window starts with no turnover: the turnover a reservation sums grows with
            // the orders of earlier windows (hundreds per customer after a few), which would
            // make each later window dearer than the one before.
            reset(&url)?;
            let tag = env.next_tag();
            let label = format!("batching {} B={batch} ×{writers}", mode.as_str());
            let mut m = crate::load::run_threads(&label, writers, window, &probe, |w| {
                worker(mode, &url, payers.clone(), writers, batch, &tag, w)
            })
            .await?;
            // One call is one batch of `batch` payments; the writers are this process.
            m.ok *= batch as u64;
            m.cpu.oneclick = m.cpu.bench;
            let r = crate::report::Record::new(
                "batching",
                Some("postgres"),
                &format!("{} B={batch}", mode.as_str()),
                writers * batch,
                payers.len(),
                &m,
            )
            .with_limits(true);
            // A window whose PostgreSQL CPU could not be read (the probe found none of its
            // backends; seen in some short windows) shows n/a, never a zero.
            let per = |k: &str| {
                let db = r.cpu_us_per_request.get("database").copied().unwrap_or(0.0);
                match r.cpu_us_per_request.get(k) {
                    Some(v) if db > 0.0 || k == "oneclick" => format!("{v:.0}"),
                    _ => "n/a".to_string(),
                }
            };
            // Two step kinds per payment (reservation, claim), each sent as one batch.
            let (stmts, rts) = mode.cost(batch);
            let _ = writeln!(
                summary,
                "{:<10} {:>3} {:>9.0} {:>8.2} {:>8.2} | {:>9} {:>9} {:>9} | {:>11} {:>9}",
                mode.as_str(),
                batch,
                r.throughput,
                r.latency_ms.p50,
                r.latency_ms.p99,
                per("oneclick"),
                per("database"),
                per("total"),
                2 * stmts,
                2 * rts
            );
            env.save_histogram(&label, &m);
            records.push(r);
        }
    }
    let _ = writeln!(
        summary,
        "(per payment: µs of CPU of the writers (this process) and of PostgreSQL; p50/p99 of a \
         batch, reservations and claims; stmts and rt per batch of B payments, both step kinds; \
         {writers} writers, limits on, TCP without TLS, {customers} customers)"
    );
    drop((app, db));
    Ok((records, summary))
}

/// Moves the orders of earlier windows out of the limits' windows (eight days back) and settles
/// the tables (statistics, a checkpoint). The orders stay: an empty `orders` table, analysed,
/// makes the planner scan it whole for the turnover (measured: 2.5 ms of PostgreSQL CPU per
/// payment once a window had added its orders).
fn reset(url: &str) -> anyhow::Result<()> {
    use diesel::connection::SimpleConnection as _;
    let mut conn = diesel::pg::PgConnection::establish_url(&without_tls(url))?;
    conn.batch_execute(
        "UPDATE orders SET created_at = created_at - 691200000 \
         WHERE created_at > CAST(extract(epoch FROM now()) * 1000 AS bigint) - 691200000",
    )?;
    conn.batch_execute("VACUUM (ANALYZE) customers, cards, orders")?;
    conn.batch_execute("CHECKPOINT")?;
    Ok(())
}
