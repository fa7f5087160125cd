//! Group commit for the payment writes: many customers' [`Reserve`] and [`Complete`] steps share
//! one database transaction (one fsync), one failure does not fail the batch, and every caller
//! hears its answer only after the batch has committed.
//!
//! Why it is safe:
//! - per-customer order is untouched: a customer has at most one step in flight (its actor waits
//!   for the answer), so a batch never holds two steps of one customer and concurrent batches of
//!   this process touch disjoint customers;
//! - the common steps on PostgreSQL write with one statement (a saved-card reservation, with or
//!   without turnover limits; a new card's reservation without limits; a final claim; the
//!   completion that saves a new card with the claim) and need no savepoint: such a step fails
//!   either inside the database, and then the whole batch is re-run step by step in the general
//!   path (below), or after undoing its own writes (a card that cannot be decrypted deletes the
//!   order its statement inserted). A batch of them is `BEGIN`, one statement a step, `COMMIT`;
//! - on PostgreSQL, when a batch holds two or more saved-card reservations (of different
//!   customers and order numbers), they are one statement together, and so are two or more
//!   new cards' reservations of merchants without limits (a registration's, say), two or more
//!   plain claims, and two or more completions that save a new card ([`run_together`],
//!   `vault::batch`): one statement per step kind for the whole batch, an outcome per row, each
//!   row answered as its own statement would have answered it. The
//!   benchmark's prototype chose this over pipelining the per-row statements (c=32, batches of
//!   16: 8.4k against 3.0k payments/s, 198 against 608 µs of CPU per payment;
//!   docs/performance.md, "Set-based batches");
//! - a batch whose every step such a statement takes (pay-token's reservations and claims; a
//!   registration's reservation and completion) opens no transaction: each statement commits
//!   as it ends ([`commit_without_transaction`]);
//! - every other step after a transaction's first runs inside its own savepoint, so a step that
//!   fails rolls back alone (`ROLLBACK TO SAVEPOINT`) and reports its error while the others
//!   stand; the first step needs none: if it fails, the transaction holds nothing else, so it is
//!   rolled back whole and the rest of the batch goes on in a new one;
//! - a lone step (the common case at low load) opens no transaction at all when it writes with
//!   one statement: PostgreSQL commits the statement as it ends, so the step costs one round
//!   trip instead of three; other lone steps take a transaction of their own;
//! - if the batch's commit fails (connection lost, a deadlock with another process), nothing of it
//!   is applied, and each step is re-run alone in its own transaction before anyone is answered.
//!
//! A savepoint costs one round trip: the previous one's `RELEASE` and the next `SAVEPOINT` go
//! together in one simple query (Diesel's nested `transaction` would spend two), and the last
//! one is released by `COMMIT`.
//!
//! The writer threads are plain OS threads, each holding one pool connection for its lifetime (no
//! checkout per payment); they take whatever steps are queued, up to `max_batch`, so batches grow with load
//! and a lone payment is committed at once.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::Connection;
use tokio::sync::oneshot;

use super::connection::{Backend, PooledConnection};
use super::payments::{
    claim_together, complete, complete_alone, complete_one_statement,
    complete_saving_cards_together, complete_step, is_plain_claim, new_card_customer, reserve,
    reserve_alone, reserve_general, reserve_new_cards_together, reserve_one_statement,
    reserve_saved_cards_together, saved_card_customer, saving_completion, Complete, Completed,
    Reservation, Reserve,
};
use super::{AnyConnection, Pool, VaultError};
use crate::crypto::Keyring;

/// One queued payment step and where its answer goes.
struct Pending {
    step: StepMsg,
    reply: ReplyTx,
}

enum StepMsg {
    Reserve(Reserve),
    Complete(Complete),
}

enum ReplyTx {
    Reserve(oneshot::Sender<Result<Reservation, VaultError>>),
    Complete(oneshot::Sender<Result<Completed, VaultError>>),
}

// One short-lived value per payment step: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Reserve(Result<Reservation, VaultError>),
    Complete(Result<Completed, VaultError>),
}

/// Handle to the writer threads. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: Sender<Pending>,
}

/// Statistics for benchmarks: batches committed and steps in them.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub steps: std::sync::atomic::AtomicU64,
    pub failed_batches: std::sync::atomic::AtomicU64,
    /// Steps run in a statement for several steps at once ([`run_together`]): answered by it,
    /// or sent on by it to the general path.
    pub together: std::sync::atomic::AtomicU64,
}

impl GroupCommit {
    /// Starts `writers` threads, each holding one connection of `pool` for its lifetime; on
    /// SQLite all but the first leave once they see the backend ([`writers_for`]).
    pub fn start(
        pool: Pool,
        keyring: Arc<Keyring>,
        writers: usize,
        max_batch: usize,
        stats: Arc<BatchStats>,
    ) -> GroupCommit {
        let (queue, rx) = mpsc::channel::<Pending>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..writers.max(1) {
            let (rx, pool, keyring, stats) =
                (rx.clone(), pool.clone(), keyring.clone(), stats.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("oneclick-writer-{i}"))
                .spawn(move || writer(i, writers, rx, pool, keyring, max_batch.max(1), stats));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a vault writer thread");
            }
        }
        GroupCommit { queue }
    }

    pub async fn reserve(&self, msg: Reserve) -> Result<Reservation, VaultError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                step: StepMsg::Reserve(msg),
                reply: ReplyTx::Reserve(tx),
            })
            .map_err(|_| VaultError::Connect("vault writers stopped".into()))?;
        rx.await
            .map_err(|_| VaultError::Connect("vault writer dropped the step".into()))?
    }

    pub async fn complete(&self, msg: Complete) -> Result<Completed, VaultError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                step: StepMsg::Complete(msg),
                reply: ReplyTx::Complete(tx),
            })
            .map_err(|_| VaultError::Connect("vault writers stopped".into()))?;
        rx.await
            .map_err(|_| VaultError::Connect("vault writer dropped the step".into()))?
    }
}

/// How many writer threads a backend gets out of the `configured` ones. PostgreSQL: all of them
/// (one batch's `COMMIT` waits for its fsync while the next batch runs). SQLite: one. SQLite
/// has one write lock per database; a second writer of this process only waits for it in
/// SQLite's busy handler, which sleeps 1, 2, 5 … up to 100 ms at a time and so loses the lock
/// to the first writer again and again. Measured (c=32, pay-token, limits on): p99.9 924 ms
/// with two writers, 18.9 ms with one, and 4,414 payments/s against 3,616
/// (docs/performance.md).
pub fn writers_for(backend: Backend, configured: usize) -> usize {
    match backend {
        Backend::Postgres => configured.max(1),
        Backend::Sqlite => 1,
    }
}

fn take_batch(rx: &Mutex<Receiver<Pending>>, max_batch: usize) -> Option<Vec<Pending>> {
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let first = rx.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(step) => batch.push(step),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// What a writer's PostgreSQL session is told once, on every connection it takes: never to
/// plan a sequential scan where an index serves. Every statement a writer runs reads and writes
/// by key, but a batch's statement is prepared once and then run with its generic plan, which
/// guesses 10 rows for each `unnest` array, and it joins tables whose statistics lag behind
/// while they grow (customers and cards, under registrations). The planner then hashes the
/// whole `customers` or `cards` table for a batch of 3 rows, a scan that grows with the vault
/// (measured, register at c=32: 1,833 against 5,272 registrations/s with it; auto_explain saw
/// 5,810 customers scanned for 3 rows; docs/performance.md, session 13). The setting only
/// prices such scans out (PostgreSQL's `enable_seqscan`): a table without a usable index is
/// still scanned. Set on the writer's pooled connection, as SQLite's writer sets its page cache;
/// a connection a writer replaces after a failure goes back to the pool with it, where it can
/// only change the plans, never the answers, of the readers' statements (which read by key or
/// page through an index as well).
pub const WRITER_SESSION_POSTGRES: &str = "SET enable_seqscan = off";

fn connect(pool: &Pool) -> PooledConnection {
    let mut delay = Duration::from_millis(50);
    loop {
        match pool.get() {
            Ok(mut c) => {
                if c.backend() == Backend::Postgres {
                    if let Err(e) = diesel::connection::SimpleConnection::batch_execute(
                        &mut *c,
                        WRITER_SESSION_POSTGRES,
                    ) {
                        tracing::warn!(error = %e, "cannot set the vault writer's planner setting");
                    }
                }
                return c;
            }
            Err(e) => {
                tracing::warn!(error = %e, "vault writer cannot connect; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Runs a step alone, in its own transaction (the fallback after a failed batch).
fn exec_alone(conn: &mut AnyConnection, keyring: &Keyring, step: &StepMsg) -> Outcome {
    match step {
        StepMsg::Reserve(m) => Outcome::Reserve(reserve(conn, keyring, m.clone())),
        StepMsg::Complete(m) => Outcome::Complete(complete(conn, keyring, m.clone())),
    }
}

fn error_of(outcome: &Outcome) -> Option<&VaultError> {
    match outcome {
        Outcome::Reserve(r) => r.as_ref().err(),
        Outcome::Complete(r) => r.as_ref().err(),
    }
}

/// A step that has nobody to share a transaction with: the common one-statement steps run
/// without `BEGIN`/`COMMIT` on PostgreSQL ([`reserve_alone`], [`complete_alone`]). After a
/// transient failure (a lost connection, a deadlock victim) the connection is replaced if it is
/// dead and the step is run once more, as a failed batch's steps are: a statement whose commit
/// is unknown replays (its order exists) or applies nothing twice (a claimed order).
fn commit_alone(
    conn: &mut PooledConnection,
    pool: &Pool,
    keyring: &Keyring,
    step: &StepMsg,
    stats: &BatchStats,
) -> Outcome {
    let run = |conn: &mut AnyConnection| match step {
        StepMsg::Reserve(m) => Outcome::Reserve(reserve_alone(conn, keyring, m)),
        StepMsg::Complete(m) => Outcome::Complete(complete_alone(conn, keyring, m)),
    };
    let outcome = run(conn);
    match error_of(&outcome) {
        Some(e) if e.is_transient() => {
            stats
                .failed_batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %e, "a lone payment step failed; running it again");
            reconnect_if_dead(conn, pool);
            run(conn)
        }
        _ => outcome,
    }
}

/// Replaces the writer's connection if it no longer answers.
fn reconnect_if_dead(conn: &mut PooledConnection, pool: &Pool) {
    if diesel::connection::SimpleConnection::batch_execute(&mut **conn, "SELECT 1").is_err() {
        *conn = connect(pool);
    }
}

/// Why a batch's transaction ended early.
enum Stop {
    /// Its first step failed: the transaction held nothing else, roll it back and go on with
    /// the rest in a new one.
    FirstStepFailed,
    /// A savepoint statement (or the transaction itself) failed: nothing of it stands.
    Batch(VaultError),
}

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        Stop::Batch(e.into())
    }
}

impl From<VaultError> for Stop {
    fn from(e: VaultError) -> Self {
        Stop::Batch(e)
    }
}

/// The step's answer if it is one PostgreSQL does as one writing statement
/// ([`reserve_one_statement`], [`complete_one_statement`]); `None`: it takes the general path.
/// Such a step needs no savepoint: it either fails inside the database or undoes its own
/// writes before failing.
fn exec_one_statement(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    step: &StepMsg,
) -> Option<Outcome> {
    match step {
        StepMsg::Reserve(m) => reserve_one_statement(conn, keyring, m)
            .transpose()
            .map(Outcome::Reserve),
        StepMsg::Complete(m) => complete_one_statement(conn, keyring, m).map(Outcome::Complete),
    }
}

/// Whether `error` came from the database, which may have aborted the transaction it ran in
/// (PostgreSQL refuses every later statement of an aborted transaction).
fn from_database(error: &VaultError) -> bool {
    matches!(
        error,
        VaultError::Query(_) | VaultError::Connect(_) | VaultError::Pool(_)
    )
}

/// A step's part in the statements [`run_together`] ran for several steps at once.
// One short-lived value per payment step, as `Outcome`: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum Together {
    /// Answered: what its own one statement would have answered.
    Done(Outcome),
    /// Its statement found no such customer yet, a stale turnover, or an order claimed before:
    /// the general path takes it (nothing was written for it but the customer's version bump).
    General,
}

/// Fewest steps worth one statement together: a lone step keeps its per-row statement, which
/// plans better (measured: 790 against 541 µs of CPU per payment in batches of one;
/// docs/performance.md, "Set-based batches").
pub const TOGETHER_FROM: usize = 2;

/// PostgreSQL: the batch's saved-card reservations in one statement, its new cards'
/// reservations in another, its plain claims in a third, its saving completions in a fourth
/// ([`reserve_saved_cards_together`], [`reserve_new_cards_together`], [`claim_together`],
/// [`complete_saving_cards_together`]), when at least [`TOGETHER_FROM`] steps share the kind.
/// A reservation of a customer, or of an order number, that another reservation of the batch
/// has stays out (one statement sees one snapshot: the second would miss the first's turnover,
/// or take the first's order for its own). One answer slot per step of `batch`, `None` for the
/// steps left to [`exec_batch`]'s loop. `Err`: a statement failed in the database, the
/// transaction is lost.
fn run_together(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    batch: &[Pending],
    stats: &BatchStats,
) -> Result<Vec<Option<Together>>, Stop> {
    let mut slots: Vec<Option<Together>> = batch.iter().map(|_| None).collect();
    for group in kinds_together(conn, batch) {
        if group.steps.len() >= TOGETHER_FROM {
            for (i, together) in run_group(conn, keyring, &group)? {
                slots[i] = Some(together);
            }
            count_together(stats, group.steps.len());
        }
    }
    Ok(slots)
}

/// The kinds of step one statement may take together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Saved-card reservations ([`saved_card_customer`]).
    SavedCards,
    /// New cards' reservations of merchants without limits ([`new_card_customer`]).
    NewCards,
    /// Plain claims ([`is_plain_claim`]).
    Claims,
    /// Completions that save their new card ([`saving_completion`]).
    Savings,
}

/// Steps of one kind, each with its index in its batch.
struct Group<'b> {
    kind: Kind,
    steps: Vec<(usize, &'b StepMsg)>,
}

/// The steps of `batch` a statement may take together, by kind, each with its index in
/// `batch`: reservations (the first of each customer and of each order number; a saved card's
/// or a new card's), plain claims and saving completions (the first of each customer). Empty
/// groups on SQLite and for a lone step.
fn kinds_together<'b>(conn: &AnyConnection, batch: &'b [Pending]) -> [Group<'b>; 4] {
    let kinds = [
        Kind::SavedCards,
        Kind::NewCards,
        Kind::Claims,
        Kind::Savings,
    ];
    let mut groups = kinds.map(|kind| Group {
        kind,
        steps: Vec::new(),
    });
    if !matches!(conn, AnyConnection::Postgresql(_)) || batch.len() < TOGETHER_FROM {
        return groups;
    }
    let mut customers = std::collections::HashSet::new();
    let mut orders = std::collections::HashSet::new();
    let mut saving = std::collections::HashSet::new();
    for (i, pending) in batch.iter().enumerate() {
        let kind = match &pending.step {
            StepMsg::Reserve(m) => {
                let (kind, customer) =
                    match (saved_card_customer(conn, m), new_card_customer(conn, m)) {
                        (Some((union_id, number, _)), _) => (Kind::SavedCards, (union_id, number)),
                        (None, Some(customer)) => (Kind::NewCards, customer),
                        (None, None) => continue,
                    };
                // Both sets see every reservation of the batch taken so far.
                let first_of_customer = customers.insert(customer);
                let first_of_order = orders.insert((m.merchant_id, m.order_number.as_str()));
                if !(first_of_customer && first_of_order) {
                    continue;
                }
                kind
            }
            StepMsg::Complete(m) => match saving_completion(conn, m) {
                Some((_, customer_id)) if saving.insert(customer_id) => Kind::Savings,
                Some(_) => continue,
                None if is_plain_claim(conn, m) => Kind::Claims,
                None => continue,
            },
        };
        groups[kind as usize].steps.push((i, &pending.step));
    }
    groups
}

/// One statement for `group` (from [`kinds_together`]): each step's part, by its index.
/// `Err`: the statement failed in the database.
fn run_group(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    group: &Group<'_>,
) -> Result<Vec<(usize, Together)>, VaultError> {
    let reserves = || {
        steps_of(group, |s| match s {
            StepMsg::Reserve(m) => Some(m),
            StepMsg::Complete(_) => None,
        })
    };
    let completions = || {
        steps_of(group, |s| match s {
            StepMsg::Complete(m) => Some(m),
            StepMsg::Reserve(_) => None,
        })
    };
    let parts: Vec<Together> = match group.kind {
        Kind::SavedCards => reserve_saved_cards_together(conn, keyring, &reserves()?)?
            .into_iter()
            .map(|answer| match answer {
                Ok(Some(done)) => Together::Done(Outcome::Reserve(Ok(done))),
                Ok(None) => Together::General,
                Err(e) => Together::Done(Outcome::Reserve(Err(e))),
            })
            .collect(),
        Kind::NewCards => reserve_new_cards_together(conn, &reserves()?)?
            .into_iter()
            .map(|answer| Together::Done(Outcome::Reserve(answer)))
            .collect(),
        Kind::Claims => claim_together(conn, &completions()?)?
            .into_iter()
            .map(|answer| match answer {
                Some(done) => Together::Done(Outcome::Complete(Ok(done))),
                None => Together::General,
            })
            .collect(),
        Kind::Savings => complete_saving_cards_together(conn, keyring, &completions()?)?
            .into_iter()
            .map(|answer| match answer {
                Ok(Some(done)) => Together::Done(Outcome::Complete(Ok(done))),
                Ok(None) => Together::General,
                Err(e) => Together::Done(Outcome::Complete(Err(e))),
            })
            .collect(),
    };
    if parts.len() != group.steps.len() {
        return Err(VaultError::Corrupt(format!(
            "{} answers for {} steps",
            parts.len(),
            group.steps.len()
        )));
    }
    Ok(group.steps.iter().map(|(i, _)| *i).zip(parts).collect())
}

/// The messages of `group`'s steps, each as `pick` takes it; `Err` if one is of another kind
/// (a group holds one kind: see [`kinds_together`]).
fn steps_of<'g, T>(
    group: &'g Group<'_>,
    pick: impl Fn(&'g StepMsg) -> Option<&'g T>,
) -> Result<Vec<&'g T>, VaultError> {
    group
        .steps
        .iter()
        .map(|(_, s)| {
            pick(s).ok_or_else(|| VaultError::Corrupt("steps of two kinds in one statement".into()))
        })
        .collect()
}

fn count_together(stats: &BatchStats, steps: usize) {
    stats
        .together
        .fetch_add(steps as u64, std::sync::atomic::Ordering::Relaxed);
}

/// A batch whose every step a statement may take together ([`kinds_together`]) needs no
/// transaction: each kind's statement (or a kind's lone step, [`commit_alone`]) commits as it
/// ends, one round trip each instead of `BEGIN`, the statements and `COMMIT`. What matters for
/// small batches (at half of peak a batch held 3.4 steps). A row the statement sends on to the
/// general path runs alone in its own transaction ([`exec_alone`]); if a statement fails, its
/// steps run alone (nothing of a failed statement is applied; if its commit's fate is unknown,
/// the steps are idempotent, as in [`commit_batch`]). `None`: not such a batch.
fn commit_without_transaction(
    conn: &mut PooledConnection,
    pool: &Pool,
    keyring: &Keyring,
    batch: &[Pending],
    stats: &BatchStats,
) -> Option<Vec<Outcome>> {
    let groups = kinds_together(conn, batch);
    if groups.iter().map(|g| g.steps.len()).sum::<usize>() != batch.len() {
        return None;
    }
    let mut slots: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
    for group in groups {
        match &group.steps[..] {
            [] => {}
            [(i, step)] => slots[*i] = Some(commit_alone(conn, pool, keyring, step, stats)),
            steps => {
                count_together(stats, steps.len());
                match run_group(conn, keyring, &group) {
                    Ok(parts) => {
                        for (i, part) in parts {
                            slots[i] = Some(match part {
                                Together::Done(outcome) => outcome,
                                Together::General => exec_alone(conn, keyring, &batch[i].step),
                            });
                        }
                    }
                    Err(e) => {
                        stats
                            .failed_batches
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(error = %e, steps = steps.len(), "a statement for several payment steps failed; running each alone");
                        if e.is_transient() {
                            *conn = connect(pool);
                        } else {
                            reconnect_if_dead(conn, pool);
                        }
                        for (i, step) in steps {
                            slots[*i] = Some(exec_alone(conn, keyring, step));
                        }
                    }
                }
            }
        }
    }
    slots.into_iter().collect()
}

/// Runs steps inside the open transaction. A step PostgreSQL does as one writing statement
/// ([`exec_one_statement`]) runs as it is: if it fails in the database the transaction is lost
/// ([`Stop::Batch`]: every step is run again alone, in the general path), otherwise it has
/// undone its own writes.
/// Every other step after the first runs in its own savepoint; the first needs none: if it
/// fails, the transaction holds nothing else and is rolled back whole
/// ([`Stop::FirstStepFailed`]), so a lone step costs no savepoint round trip.
///
/// A savepoint is released only when the next one is set, so steps run between the two are
/// inside it; that is safe because a savepoint is rolled back only right after its own step
/// failed, before any other step ran.
fn exec_batch(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    batch: &[Pending],
    outcomes: &mut Vec<Outcome>,
    stats: &BatchStats,
) -> Result<(), Stop> {
    let mut together = run_together(conn, keyring, batch, stats)?;
    // The statements run together wrote before the first step below: no step may then assume
    // the transaction holds nothing else.
    let mut holds_others = together.iter().any(Option::is_some);
    let mut savepoint = false;
    for (i, pending) in batch.iter().enumerate() {
        let first = !holds_others;
        holds_others = true;
        match together[i].take() {
            // Answered by a statement run together: no statement of its own.
            Some(Together::Done(outcome)) => match outcome {
                Outcome::Reserve(Err(e)) | Outcome::Complete(Err(e)) if from_database(&e) => {
                    return Err(Stop::Batch(e))
                }
                outcome => {
                    outcomes.push(outcome);
                    continue;
                }
            },
            // Run together, but the general path must take it (see `run_together`).
            Some(Together::General) => {}
            None => match exec_one_statement(conn, keyring, &pending.step) {
                // The transaction may be aborted: nothing of it stands. Even as the first step, the
                // step is run again alone: a completion that saves a card may have failed for the
                // save, which alone (in its savepoint) cannot fail the payment (R5).
                Some(Outcome::Reserve(Err(e)) | Outcome::Complete(Err(e))) if from_database(&e) => {
                    return Err(Stop::Batch(e))
                }
                Some(outcome) => {
                    outcomes.push(outcome);
                    continue;
                }
                None => {}
            },
        }
        if !first {
            set_step_savepoint(conn, savepoint)?;
            savepoint = true;
        }
        let outcome = match &pending.step {
            StepMsg::Reserve(m) => Outcome::Reserve(reserve_general(conn, keyring, m)),
            StepMsg::Complete(m) => Outcome::Complete(complete_step(conn, keyring, m)),
        };
        let ok = error_of(&outcome).is_none();
        outcomes.push(outcome);
        if !ok {
            if first {
                return Err(Stop::FirstStepFailed);
            }
            rollback_to_step_savepoint(conn)?;
        }
    }
    Ok(())
}

/// Sets the savepoint of the next step, releasing the previous step's first when `release`.
/// PostgreSQL: one simple query, one round trip. SQLite: prepared statements, planned once per
/// connection (as text SQLite parsed both at every step).
fn set_step_savepoint(conn: &mut AnyConnection, release: bool) -> diesel::QueryResult<()> {
    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;
    match conn {
        AnyConnection::Postgresql(c) => c.batch_execute(if release {
            "RELEASE SAVEPOINT step; SAVEPOINT step"
        } else {
            "SAVEPOINT step"
        }),
        AnyConnection::Sqlite(c) => {
            if release {
                super::prepared::ReleaseStepSavepoint {}.execute(c)?;
            }
            super::prepared::SetStepSavepoint {}.execute(c).map(drop)
        }
    }
}

/// Undoes a failed step to its savepoint ([`set_step_savepoint`]).
fn rollback_to_step_savepoint(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    use diesel::connection::SimpleConnection;
    use diesel::RunQueryDsl;
    match conn {
        AnyConnection::Postgresql(c) => c.batch_execute("ROLLBACK TO SAVEPOINT step"),
        AnyConnection::Sqlite(c) => super::prepared::RollbackToStepSavepoint {}
            .execute(c)
            .map(drop),
    }
}

/// Commits `batch`, in as few transactions as it takes: one, plus one more after each first
/// step that fails. Returns each step's outcome, in order.
fn commit_batch(
    conn: &mut PooledConnection,
    pool: &Pool,
    keyring: &Keyring,
    batch: &[Pending],
    stats: &BatchStats,
) -> Vec<Outcome> {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(outcomes) = commit_without_transaction(conn, pool, keyring, batch, stats) {
        return outcomes;
    }
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
    while outcomes.len() < batch.len() {
        let done = outcomes.len();
        let rest = &batch[done..];
        let committed = conn.transaction::<_, Stop, _>(|conn| {
            // A step may read before it writes (SQLite would then refuse the write).
            super::connection::lock_for_writing(conn)?;
            exec_batch(conn, keyring, rest, &mut outcomes, stats)
        });
        let e = match committed {
            Ok(()) => break,
            // Rolled back; its outcome (the error) is kept, the others go on.
            Err(Stop::FirstStepFailed) => continue,
            Err(Stop::Batch(e)) => e,
        };
        outcomes.truncate(done);
        stats.failed_batches.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, steps = rest.len(), "group commit failed; re-running each step alone");
        if e.is_transient() {
            *conn = connect(pool);
        } else {
            reconnect_if_dead(conn, pool);
        }
        // Nothing of the transaction was applied (or, if the commit's fate is unknown, the steps
        // are idempotent: a reserved order replays, a completed order is not completed twice).
        outcomes.extend(rest.iter().map(|p| exec_alone(conn, keyring, &p.step)));
    }
    outcomes
}

/// The SQLite writer connection's page cache in KiB (SQLite's default is 2,000 KiB per
/// connection): the one writer reads the customers, cards and recent orders of every payment,
/// and with the default cache most of those reads were copies from the OS page cache (`pread`,
/// 6 % of the writer's samples). 64 MiB: pay-token with limits on went from 3,564 and 3,362 to
/// 4,109 and 3,934 payments/s (c=32, alternated; docs/performance.md). The other connections
/// keep the default.
pub const SQLITE_WRITER_CACHE_KIB: u32 = 65_536;

/// How often the SQLite checkpointer copies the WAL back into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Starts SQLite's checkpointer: a thread that runs a passive checkpoint on a free pool
/// connection every [`CHECKPOINT_EVERY`] until the returned sender is dropped. A passive
/// checkpoint waits for no reader or writer, so the writer never pays for one; left to SQLite,
/// the commit that grows the WAL past `wal_autocheckpoint` pages copies it back and syncs the
/// database file before its batch is answered (connection.rs raises that threshold to a
/// backstop for when this thread falls behind).
fn start_checkpointer(pool: &Pool) -> Sender<()> {
    let (stop, stopped) = mpsc::channel::<()>();
    let pool = pool.clone();
    let spawned = std::thread::Builder::new()
        .name("oneclick-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                // A connection only if one is free: the checkpoint never makes a vault worker
                // wait (a busy pool skips a tick; the backstop threshold stays).
                let Some(mut conn) = pool.try_get() else {
                    continue;
                };
                if let Err(e) = diesel::connection::SimpleConnection::batch_execute(
                    &mut *conn,
                    "PRAGMA wal_checkpoint(PASSIVE)",
                ) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; trying again later");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the SQLite checkpointer thread");
    }
    stop
}

/// Writer thread `index` of `configured`.
fn writer(
    index: usize,
    configured: usize,
    rx: Arc<Mutex<Receiver<Pending>>>,
    pool: Pool,
    keyring: Arc<Keyring>,
    max_batch: usize,
    stats: Arc<BatchStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut conn = connect(&pool);
    if index >= writers_for(conn.backend(), configured) {
        tracing::debug!(
            writer = index,
            "not needed on this backend: one writer on SQLite"
        );
        return;
    }
    // SQLite: the WAL is checkpointed beside the writer, not in it (the writer's end of this
    // channel closing stops the checkpointer), and the writer keeps a larger page cache.
    let _checkpoints = (conn.backend() == Backend::Sqlite).then(|| {
        let pragma = format!("PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}");
        if let Err(e) = diesel::connection::SimpleConnection::batch_execute(&mut *conn, &pragma) {
            tracing::warn!(error = %e, "cannot size the SQLite writer's page cache");
        }
        start_checkpointer(&pool)
    });
    while let Some(batch) = take_batch(&rx, max_batch) {
        stats.batches.fetch_add(1, Relaxed);
        stats.steps.fetch_add(batch.len() as u64, Relaxed);
        let outcomes = match &batch[..] {
            [lone] => vec![commit_alone(&mut conn, &pool, &keyring, &lone.step, &stats)],
            _ => commit_batch(&mut conn, &pool, &keyring, &batch, &stats),
        };
        for (pending, outcome) in batch.into_iter().zip(outcomes) {
            match (pending.reply, outcome) {
                (ReplyTx::Reserve(tx), Outcome::Reserve(r)) => {
                    let _ = tx.send(r);
                }
                (ReplyTx::Complete(tx), Outcome::Complete(r)) => {
                    let _ = tx.send(r);
                }
                _ => tracing::error!("group commit answer of the wrong kind"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_one_writer_whatever_is_configured_and_postgres_gets_what_is_configured() {
        for configured in [1, 2, 8] {
            assert_eq!(writers_for(Backend::Sqlite, configured), 1);
            assert_eq!(writers_for(Backend::Postgres, configured), configured);
        }
        assert_eq!(writers_for(Backend::Postgres, 0), 1);
    }
}
