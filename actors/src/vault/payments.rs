//! Payments in two transactions around the acquirer call:
//!
//! 1. [`Reserve`]: idempotency (R16) → the customer's write lock → the saved card still usable →
//!    turnover of the day and week windows (R12) → the order row `In Process`, counting toward
//!    the limits when its kind moves money (`counts_for_limits`; never a registration, R13), or a
//!    stored `Declined/AS105` when a limit would be exceeded.
//!    The lock makes concurrent payments of one customer, from any process, see each other's
//!    reservations, so together they can never exceed a limit.
//! 2. [`Complete`]: the acquirer's outcome, the card's counters, saving the card (R5, R11) in a
//!    savepoint so a failed save never turns an approved payment into a failed one, and the reply,
//!    all in one transaction. A decline releases the reservation; approval and timeout keep it.

use chrono::NaiveDate;
use diesel::prelude::*;

use super::customers::{create_customer, lock_customer, snapshot, LockedCustomer};
use super::records::{CardRecord, CustomerSnapshot, OrderRecord, PendingOrder};
use super::rows::{CardMetaRow, NewAgreementRow, OrderRow};
use super::schema::{cards, orders, recurring_agreements};
use super::{on_backend, vault_message, AnyConnection, VaultError};
use crate::crypto::{agreement_aad, card_aad_for, card_owner_aad, Keyring, CARD_AAD_OWNER};
use crate::domain::PaymentResult;
use crate::domain::{
    limits, status, Amount, Expiry, Limits, OrderKind, OrderState, Pan, RecurringParams,
    ResponseCode, Token,
};

/// The limits and windows to check, already resolved for the paying merchant (R12). The check
/// itself is [`limits::check`]: the vault only sums, under the customer's lock, what counts.
#[derive(Debug, Clone, Copy)]
pub struct LimitCheck {
    pub limits: Limits,
    pub day_start_ms: i64,
    pub week_start_ms: i64,
}

/// Step 1 of a payment.
#[derive(Debug, Clone)]
pub struct Reserve {
    pub merchant_id: i64,
    pub order_number: String,
    pub kind: OrderKind,
    /// (union, customer number) for One Click payments; created if new.
    pub customer: Option<(i64, String)>,
    /// For saved-card payments: the card to charge.
    pub token: Option<String>,
    /// For recurring charges: the agreement (locked, terms checked by the caller via `terms`).
    pub agreement: Option<AgreementCharge>,
    pub amount: i64,
    pub currency: String,
    pub digest: [u8; 32],
    pub limits: Option<LimitCheck>,
    /// The reply stored if a limit is exceeded (Declined, AS105).
    pub limit_declined: PaymentResult,
    pub now_ms: i64,
}

/// A recurring charge against the agreement of (merchant, initial order number) (R15).
#[derive(Debug, Clone)]
pub struct AgreementCharge {
    pub initial_order_number: String,
    pub today: NaiveDate,
}

// One short-lived value per payment step: boxing the large variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Reservation {
    /// Go ahead and ask the acquirer.
    Reserved {
        order_id: i64,
        customer_id: Option<i64>,
        /// The saved card (or agreement card, as a record with id 0) and its decrypted number.
        card: Option<(CardRecord, Pan)>,
        /// For recurring charges: agreement id, its network transaction id, previous charge date.
        agreement: Option<(i64, Option<String>, Option<String>)>,
    },
    /// The order exists with the same content: its stored reply, or none yet (still in process
    /// here or elsewhere, or left in doubt by a process that died) and the pending order.
    Replay(Option<PaymentResult>, PendingOrder),
    /// The order number was used for a different command.
    Conflict,
    /// Declined with AS105 without asking the acquirer; the reply is stored.
    LimitExceeded(PaymentResult),
    /// The token is not a usable card of this customer.
    CardUnavailable,
    /// No agreement for this initial order.
    AgreementNotFound,
    /// The charge is outside the agreement's terms.
    OutOfTerms,
    /// The customer is flagged `fraud` (R6), as committed: a cached snapshot may predate the flag.
    CustomerFraud,
}
vault_message!(Reserve => Reservation, reserve);

fn find_order(
    conn: &mut AnyConnection,
    merchant_id: i64,
    order_number: &str,
) -> Result<Option<OrderRow>, VaultError> {
    Ok(orders::table
        .filter(orders::merchant_id.eq(merchant_id))
        .filter(orders::order_number.eq(order_number))
        .select(OrderRow::as_select())
        // (merchant, order number) is unique; no `.first()`: see `prepared::ReadActiveCard`.
        .get_result(conn)
        .optional()?)
}

fn replay(row: OrderRow, kind: OrderKind, digest: &[u8; 32]) -> Result<Reservation, VaultError> {
    if row.kind != kind.as_str() || row.request_digest != digest {
        return Ok(Reservation::Conflict);
    }
    let stored =
        match &row.result_json {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                VaultError::Corrupt(format!("stored result of order {}: {e}", row.id))
            })?),
            None => None,
        };
    let pending = PendingOrder {
        id: row.id,
        merchant_id: row.merchant_id,
        customer_id: row.customer_id,
        updated_at: row.updated_at,
    };
    Ok(Reservation::Replay(stored, pending))
}

pub fn reserve(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: Reserve,
) -> Result<Reservation, VaultError> {
    conn.transaction(|conn| {
        super::connection::lock_for_writing(conn)?;
        reserve_step(conn, keyring, &msg)
    })
}

/// [`reserve`] inside the caller's transaction (or group-commit savepoint): on `Err` the caller
/// must roll back what the step wrote.
///
/// There is no lookup of the order before the lock: a repeat is rare, so the common case pays
/// nothing for it. A repeat is recognised where it would otherwise be answered: by the order
/// insert (`ON CONFLICT DO NOTHING` inserts nothing, the stored order is replayed) and, on the
/// paths that end before the insert (card gone, fraud, agreement terms), by a lookup there, so a
/// repeat of an approved payment still gets its stored reply after its card was deleted.
fn reserve_step(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
) -> Result<Reservation, VaultError> {
    match reserve_one_statement(conn, keyring, msg)? {
        Some(done) => Ok(done),
        None => reserve_general(conn, keyring, msg),
    }
}

/// A reservation PostgreSQL does in one statement ([`reserve_in_one_statement`]), answered as
/// [`reserve_step`] answers it. `None`: not one of them; nothing was written but the customer's
/// version bump, and the caller takes [`reserve_general`].
///
/// Such a step needs no savepoint in a shared transaction: it fails either inside the database
/// (a [`VaultError::Query`]: the transaction is lost anyway) or after undoing its own writes.
pub(crate) fn reserve_one_statement(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
) -> Result<Option<Reservation>, VaultError> {
    match reserve_in_one_statement(conn, keyring, msg)? {
        Some(done) => replay_if_refused(conn, msg, done).map(Some),
        None => Ok(None),
    }
}

/// The customer (union, number) and token of a reservation [`reserve_saved_card`] takes on
/// PostgreSQL (so [`reserve_saved_cards_together`] may take it with others); `None`: not one.
pub(crate) fn saved_card_customer<'m>(
    conn: &AnyConnection,
    msg: &'m Reserve,
) -> Option<(i64, &'m str, &'m str)> {
    match (conn, &msg.customer, &msg.agreement, &msg.token) {
        (AnyConnection::Postgresql(_), Some((union_id, number)), None, Some(token)) => {
            Some((*union_id, number.as_str(), token.as_str()))
        }
        _ => None,
    }
}

/// [`reserve_one_statement`] for several saved-card reservations at once, in one statement
/// ([`super::batch::ReserveSavedCards`]), inside the caller's transaction. Every message must
/// be one [`saved_card_customer`] accepts, no two of one customer. Each answer is what
/// [`reserve_one_statement`] would have answered: `Ok(None)` sends the step to the general path
/// (no such customer yet, or a stale turnover). `Err` of the whole: the statement failed in the
/// database, the transaction is lost.
pub(crate) fn reserve_saved_cards_together(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msgs: &[&Reserve],
) -> Result<Vec<Result<Option<Reservation>, VaultError>>, VaultError> {
    let mut named = Vec::with_capacity(msgs.len());
    for msg in msgs {
        match saved_card_customer(conn, msg) {
            Some(customer) => named.push(customer),
            None => return Err(VaultError::Corrupt("not a saved-card reservation".into())),
        }
    }
    let AnyConnection::Postgresql(c) = &mut *conn else {
        return Err(VaultError::Corrupt(
            "set-based reservations on SQLite".into(),
        ));
    };
    let windows: Vec<(i64, i64, i64)> = msgs.iter().map(|m| turnover_windows(m)).collect();
    let all = super::batch::ReserveSavedCards {
        union_id: named.iter().map(|n| n.0).collect(),
        customer_number: named.iter().map(|n| n.1).collect(),
        token: named.iter().map(|n| n.2).collect(),
        merchant_id: msgs.iter().map(|m| m.merchant_id).collect(),
        order_number: msgs.iter().map(|m| m.order_number.as_str()).collect(),
        kind: msgs.iter().map(|m| m.kind.as_str()).collect(),
        counts_for_limits: msgs.iter().map(|m| m.kind.moves_money()).collect(),
        amount: msgs.iter().map(|m| m.amount).collect(),
        currency: msgs.iter().map(|m| m.currency.as_str()).collect(),
        request_digest: msgs.iter().map(|m| &m.digest[..]).collect(),
        limited: msgs.iter().map(|m| m.limits.is_some()).collect(),
        since: windows.iter().map(|w| w.0).collect(),
        day_start: windows.iter().map(|w| w.1).collect(),
        week_start: windows.iter().map(|w| w.2).collect(),
        now_ms: msgs.iter().map(|m| m.now_ms).collect(),
    };
    let rows: Vec<super::batch::ReservedRow> = all.load(c)?;
    if rows.len() != msgs.len() {
        return Err(VaultError::Corrupt(format!(
            "{} rows for {} reservations",
            rows.len(),
            msgs.len()
        )));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (i, ((n, row), msg)) in rows.into_iter().zip(msgs).enumerate() {
        if n != i as i64 + 1 {
            return Err(VaultError::Corrupt(format!(
                "reservation row {n} where {} was due",
                i + 1
            )));
        }
        let (customer_id, fraud, meta, blob, version, aad_version, order_id, fresh, day, week) =
            row;
        let (Some(customer_id), Some(fraud)) = (customer_id, fraud) else {
            // No such customer yet: the general path creates it.
            out.push(Ok(None));
            continue;
        };
        let row = (
            customer_id,
            fraud,
            meta,
            blob,
            version,
            aad_version,
            order_id,
            fresh,
            day,
            week,
        );
        let answer =
            finish_saved_card(conn, keyring, msg, named[i].1, row).and_then(|done| match done {
                Some(done) => replay_if_refused(conn, msg, done).map(Some),
                None => Ok(None),
            });
        out.push(answer);
    }
    Ok(out)
}

/// Every reservation, in several statements inside the caller's transaction (or group-commit
/// savepoint): on `Err` the caller must roll back what the step wrote.
pub(crate) fn reserve_general(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
) -> Result<Reservation, VaultError> {
    let outcome = reserve_in(conn, keyring, msg)?;
    replay_if_refused(conn, msg, outcome)
}

/// A [`reserve`] that shares its transaction with no other step. The common reservations on
/// PostgreSQL are one statement ([`reserve_in_one_statement`]) and run without `BEGIN`/`COMMIT`:
/// PostgreSQL commits the statement as it ends, one round trip instead of three. Every other
/// reservation takes [`reserve`]'s transaction.
pub(crate) fn reserve_alone(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
) -> Result<Reservation, VaultError> {
    match reserve_one_statement(conn, keyring, msg)? {
        Some(done) => Ok(done),
        None => conn.transaction(|conn| {
            super::connection::lock_for_writing(conn)?;
            reserve_general(conn, keyring, msg)
        }),
    }
}

/// A refusal that ended before the order insert may answer a repeat of an order that was
/// approved earlier (its card deleted since, say): the stored order answers it.
fn replay_if_refused(
    conn: &mut AnyConnection,
    msg: &Reserve,
    outcome: Reservation,
) -> Result<Reservation, VaultError> {
    match outcome {
        Reservation::CustomerFraud
        | Reservation::CardUnavailable
        | Reservation::AgreementNotFound
        | Reservation::OutOfTerms => match find_order(conn, msg.merchant_id, &msg.order_number)? {
            Some(row) => replay(row, msg.kind, &msg.digest),
            None => Ok(outcome),
        },
        other => Ok(other),
    }
}

/// The reservations PostgreSQL does in one statement, for every payment of an existing
/// customer but a recurring charge: a saved card's, with or without turnover limits
/// ([`reserve_saved_card`]), and a new card's or a registration's when the merchant has no
/// limits ([`reserve_new_card`]). `None`: not one of them, or the saved card's statement read a
/// stale turnover; nothing was written but the customer's version bump.
///
/// Such a reservation may run with no transaction around it or no savepoint: it either fails
/// inside the database or undoes its own writes before it fails.
fn reserve_in_one_statement(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
) -> Result<Option<Reservation>, VaultError> {
    let (AnyConnection::Postgresql(_), Some((union_id, number)), None) =
        (&*conn, &msg.customer, &msg.agreement)
    else {
        return Ok(None);
    };
    let customer = (*union_id, number.as_str());
    match (&msg.token, &msg.limits) {
        (Some(token), _) => reserve_saved_card(conn, keyring, msg, customer, token),
        (None, None) => reserve_new_card(conn, msg, customer),
        (None, Some(_)) => Ok(None),
    }
}

/// The turnover `day_used` and `week_used` (sums of minor units) and the `requested` amount
/// checked against the merchant's limits (R12, [`limits::check`]).
fn over_limit(
    window: &LimitCheck,
    day_used: i64,
    week_used: i64,
    requested: i64,
) -> Result<Option<limits::LimitExceeded>, VaultError> {
    // Sums past the largest amount are over any limit anyway: clamp them into an Amount.
    let amount_of = |minor: i64| {
        Amount::from_minor(minor.clamp(0, Amount::MAX.minor()))
            .ok_or_else(|| VaultError::Corrupt("amount".into()))
    };
    let (day, week, requested) = (
        amount_of(day_used)?,
        amount_of(week_used)?,
        amount_of(requested)?,
    );
    Ok(limits::check(&window.limits, day, week, requested).err())
}

/// Every reservation but the one-statement ones ([`reserve_in_one_statement`]).
fn reserve_in(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
) -> Result<Reservation, VaultError> {
    // The card a saved-card payment charges is read with the lock (see `lock_reading_card`).
    let mut card_row: Option<CardRead> = None;
    let locked = match &msg.customer {
        Some((union_id, number)) => match match &msg.token {
            Some(token) => lock_reading_card(conn, *union_id, number, token)?.map(|(l, row)| {
                card_row = row;
                l
            }),
            None => lock_customer(conn, *union_id, number, false, 0)?,
        } {
            Some(locked) => Some(locked),
            None => {
                // A new customer. A repeat of an order that names a new customer number (a
                // conflict) must not create it: look the order up before creating.
                if let Some(row) = find_order(conn, msg.merchant_id, &msg.order_number)? {
                    return replay(row, msg.kind, &msg.digest);
                }
                Some(create_customer(conn, *union_id, number, msg.now_ms)?)
            }
        },
        None => None,
    };
    // R6 under the customer's lock: another process may have set the flag after this process
    // cached the customer, and its cache must not let a refused customer be charged.
    if locked.is_some_and(|l| status::refuses_payments(l.fraud)) {
        return Ok(Reservation::CustomerFraud);
    }
    let customer_id = locked.map(|l| l.id);
    // A customer this transaction created has no orders to sum for its limits.
    let created_now = locked.is_some_and(|l| l.created);
    let mut card = None;
    if let (Some(_), Some(customer_id), Some((_, number))) =
        (&msg.token, customer_id, &msg.customer)
    {
        // A customer created just now has no cards: `card_row` is `None`.
        let Some((meta, Some(blob), Some(version), aad_version)) = card_row.take() else {
            return Ok(Reservation::CardUnavailable);
        };
        let record = CardRecord::try_from(meta)?;
        // Bound to the customer asking (finding 7): a row moved to another customer fails here.
        let pan = card_aad_for(aad_version, customer_id, number, &record.token)
            .map_err(VaultError::from)
            .and_then(|aad| open_pan(keyring, version, &blob, &aad))
            .inspect_err(|e| log_unopenable(record.id, version, aad_version, e))?;
        card = Some((record, pan));
    }
    let mut agreement = None;
    if let Some(charge) = &msg.agreement {
        // Lock the agreement row first (same trick as customers), then check its terms.
        let target = recurring_agreements::table
            .filter(recurring_agreements::merchant_id.eq(msg.merchant_id))
            .filter(recurring_agreements::order_number.eq(&charge.initial_order_number));
        if diesel::update(target)
            .set(recurring_agreements::charges.eq(recurring_agreements::charges))
            .execute(conn)?
            == 0
        {
            return Ok(Reservation::AgreementNotFound);
        }
        let row: super::rows::AgreementRow = target
            .select(super::rows::AgreementRow::as_select())
            .first(conn)?;
        let params = agreement_params(&row)?;
        let last = row
            .last_charge_on
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let amount = crate::domain::Amount::from_minor(msg.amount)
            .ok_or_else(|| VaultError::Corrupt("negative amount".into()))?;
        if row.currency != msg.currency
            || crate::domain::recurring::check_charge(&params, amount, charge.today, last).is_err()
        {
            return Ok(Reservation::OutOfTerms);
        }
        // Reserve the period now; a decline puts the previous date back (see Complete).
        diesel::update(recurring_agreements::table.find(row.id))
            .set(
                recurring_agreements::last_charge_on
                    .eq(charge.today.format("%Y-%m-%d").to_string()),
            )
            .execute(conn)?;
        let pan = open_pan(
            keyring,
            u32_version(row.key_version)?,
            &row.pan_ciphertext,
            &agreement_aad(row.merchant_id, &row.order_number),
        )?;
        let expiry = Expiry::from_parts(row.expiry_month as u32, row.expiry_year as u32)
            .map_err(|_| VaultError::Corrupt("agreement expiry".into()))?;
        let record = CardRecord {
            id: 0,
            token: String::new(),
            customer_id: 0,
            state: crate::domain::CardState::Active,
            brand: pan.brand(),
            bin: row.bin.as_str().into(),
            last4: row.last4.as_str().into(),
            pan_length: pan.len(),
            expiry,
            holder: row.holder.as_str().into(),
            saved_by_merchant: row.merchant_id,
            saved_at: row.created_at,
            last_used_at: None,
            success_count: row.charges,
            deleted_at: None,
        };
        card = Some((record, pan));
        agreement = Some((
            row.id,
            row.network_tx_id.clone(),
            row.last_charge_on.clone(),
        ));
    }
    let mut state = OrderState::InProcess;
    let mut stored: Option<String> = None;
    if let (Some(window), Some(cid)) = (msg.limits, customer_id) {
        let since = window.week_start_ms.min(window.day_start_ms);
        // The request alone is checked for a customer created just now (no query: it has no
        // orders yet).
        let rows: Vec<(i64, i64)> = if created_now {
            Vec::new()
        } else {
            turnover_rows(cid, &msg.currency, since).load(conn)?
        };
        let used_since = |start: i64| {
            rows.iter()
                .filter(|(_, t)| *t >= start)
                .fold(0i64, |sum, (a, _)| sum.saturating_add(*a))
        };
        let (day_used, week_used) = (
            used_since(window.day_start_ms),
            used_since(window.week_start_ms),
        );
        if let Some(exceeded) = over_limit(&window, day_used, week_used, msg.amount)? {
            tracing::debug!(window = %exceeded.window, "payment over a turnover limit: declined");
            state = OrderState::Declined;
            stored = Some(
                serde_json::to_string(&msg.limit_declined)
                    .map_err(|e| VaultError::Corrupt(e.to_string()))?,
            );
        }
    }
    let declined = state == OrderState::Declined;
    let insert = super::prepared::InsertOrder {
        merchant_id: msg.merchant_id,
        order_number: &msg.order_number,
        kind: msg.kind.as_str(),
        customer_id,
        card_id: card.as_ref().map(|(c, _)| c.id).filter(|id| *id != 0),
        agreement_id: agreement.as_ref().map(|a| a.0),
        amount: msg.amount,
        currency: &msg.currency,
        state: state.as_str(),
        response_code: if declined {
            limits::LimitExceeded::RESPONSE_CODE.as_str()
        } else {
            ResponseCode::AS300.as_str()
        },
        // R12/R13: a registration never counts; a payment declined here reserves nothing.
        counts_for_limits: msg.kind.moves_money() && !declined,
        request_digest: &msg.digest,
        result_json: stored.as_deref(),
        now_ms: msg.now_ms,
    };
    let inserted: Option<i64> = on_backend!(&mut *conn, |c| insert.get_result(c).optional())?;
    let Some(order_id) = inserted else {
        return replay_existing(conn, msg);
    };
    if declined {
        return Ok(Reservation::LimitExceeded(msg.limit_declined.clone()));
    }
    Ok(Reservation::Reserved {
        order_id,
        customer_id,
        card,
        agreement,
    })
}

/// The orders of `customer_id` in `currency` counting toward its turnover limits since `since`:
/// `(amount, created_at)`. Answered from the `orders_turnover` index alone on SQLite (it covers
/// every column read; test `the_turnover_read_never_leaves_its_index_on_sqlite`).
#[diesel::dsl::auto_type(no_type_alias)]
fn turnover_rows<'a>(customer_id: i64, currency: &'a str, since: i64) -> _ {
    orders::table
        .filter(orders::customer_id.eq(customer_id))
        .filter(orders::currency.eq(currency))
        .filter(orders::counts_for_limits)
        .filter(orders::created_at.ge(since))
        .select((orders::amount, orders::created_at))
}

/// A saved-card payment of an existing customer on PostgreSQL, with or without turnover limits
/// (not a recurring charge: see [`reserve_in_one_statement`]), in one statement
/// ([`super::prepared::ReserveSavedCard`]): the lock, the card, the turnover and the order.
/// The limit is checked here, after the statement, by [`over_limit`]; an order over it is
/// declined by a second statement ([`super::prepared::DeclineOverLimit`]), the rare case.
/// `None`: no such customer yet, or the statement's turnover was stale (a reservation of
/// another process committed while it waited for the lock): the general path takes it, nothing
/// was written but the version bump.
///
/// Without a transaction around it the statement is committed before the card is decrypted:
/// if that fails (a corrupt row, a key version this process lacks), the order it inserted is
/// deleted again, so a failed payment leaves no order behind, in a transaction or not.
fn reserve_saved_card(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
    (union_id, customer_number): (i64, &str),
    token: &str,
) -> Result<Option<Reservation>, VaultError> {
    let AnyConnection::Postgresql(c) = &mut *conn else {
        return Ok(None);
    };
    let (since, day_start, week_start) = turnover_windows(msg);
    let all = super::prepared::ReserveSavedCard {
        union_id,
        customer_number,
        token,
        merchant_id: msg.merchant_id,
        order_number: &msg.order_number,
        kind: msg.kind.as_str(),
        counts_for_limits: msg.kind.moves_money(),
        amount: msg.amount,
        currency: &msg.currency,
        request_digest: &msg.digest,
        now_ms: msg.now_ms,
        limited: msg.limits.is_some(),
        since,
        day_start,
        week_start,
    };
    let Some(row) = all.get_result::<SavedCardRow>(c).optional()? else {
        return Ok(None);
    };
    finish_saved_card(conn, keyring, msg, customer_number, row)
}

/// The turnover a saved-card reservation's statement sums: (since, day start, week start) in
/// ms. Without limits none is needed: an empty range of the turnover index.
fn turnover_windows(msg: &Reserve) -> (i64, i64, i64) {
    match &msg.limits {
        Some(w) => (
            w.day_start_ms.min(w.week_start_ms),
            w.day_start_ms,
            w.week_start_ms,
        ),
        None => (i64::MAX, i64::MAX, i64::MAX),
    }
}

/// What [`super::prepared::ReserveSavedCard`] returns for an existing customer (and
/// [`super::batch::ReserveSavedCards`] for each of its rows).
pub type SavedCardRow = (
    i64,
    bool,
    Option<CardMetaRow>,
    Option<Vec<u8>>,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    bool,
    i64,
    i64,
);

/// The saved card's reservation after its statement: the customer's flag, the freshness of its
/// turnover, the card opened, the limit checked (see [`reserve_saved_card`]).
fn finish_saved_card(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Reserve,
    customer_number: &str,
    (customer_id, fraud, meta, blob, version, aad_version, order_id, fresh, day, week): SavedCardRow,
) -> Result<Option<Reservation>, VaultError> {
    if status::refuses_payments(fraud) {
        return Ok(Some(Reservation::CustomerFraud));
    }
    if msg.limits.is_some() && !fresh {
        tracing::debug!(
            customer_id,
            "turnover read before another reservation committed: read again after the lock"
        );
        return Ok(None);
    }
    let (Some(meta), Some(blob), Some(version), Some(aad_version)) =
        (meta, blob, version, aad_version)
    else {
        return Ok(Some(Reservation::CardUnavailable));
    };
    let Some(order_id) = order_id else {
        return replay_existing(conn, msg).map(Some);
    };
    // From here every failure first undoes the order: nobody may roll it back.
    let opened = CardRecord::try_from(meta).and_then(|record| {
        let pan = card_aad_for(aad_version, customer_id, customer_number, &record.token)
            .map_err(VaultError::from)
            .and_then(|aad| open_pan(keyring, version, &blob, &aad))
            .inspect_err(|e| log_unopenable(record.id, version, aad_version, e))?;
        Ok((record, pan))
    });
    let (record, pan) = match opened {
        Ok(card) => card,
        Err(e) => return Err(undo_order(conn, order_id, e)),
    };
    if let Some(window) = &msg.limits {
        let exceeded = match over_limit(window, day, week, msg.amount) {
            Ok(exceeded) => exceeded,
            Err(e) => return Err(undo_order(conn, order_id, e)),
        };
        if let Some(exceeded) = exceeded {
            tracing::debug!(window = %exceeded.window, "payment over a turnover limit: declined");
            let json = match serde_json::to_string(&msg.limit_declined) {
                Ok(json) => json,
                Err(e) => {
                    return Err(undo_order(
                        conn,
                        order_id,
                        VaultError::Corrupt(e.to_string()),
                    ))
                }
            };
            let decline = super::prepared::DeclineOverLimit {
                id: order_id,
                response_code: limits::LimitExceeded::RESPONSE_CODE.as_str(),
                result_json: &json,
                now_ms: msg.now_ms,
            };
            on_backend!(&mut *conn, |c| decline.execute(c))?;
            return Ok(Some(Reservation::LimitExceeded(msg.limit_declined.clone())));
        }
    }
    Ok(Some(Reservation::Reserved {
        order_id,
        customer_id: Some(customer_id),
        card: Some((record, pan)),
        agreement: None,
    }))
}

/// Deletes the order a one-statement reservation inserted before it failed with `error`, and
/// returns the error to answer: `error`, or the database's if the delete failed too (the
/// transaction it ran in, if any, is then lost: a database error says so to the caller).
fn undo_order(conn: &mut AnyConnection, order_id: i64, error: VaultError) -> VaultError {
    match diesel::delete(orders::table.find(order_id)).execute(conn) {
        Ok(_) => error,
        Err(undo) => {
            tracing::error!(order_id, error = %undo, cause = %error, "cannot delete the order of a payment that failed after its reservation");
            undo.into()
        }
    }
}

/// A new card's payment or registration for a customer (new or not) on PostgreSQL, when the
/// merchant has no turnover limits (see [`reserve_in_one_statement`]), in one statement
/// ([`super::prepared::ReserveNewCard`]). Nothing can fail after the statement, so it may run
/// without a transaction or a savepoint.
fn reserve_new_card(
    conn: &mut AnyConnection,
    msg: &Reserve,
    (union_id, customer_number): (i64, &str),
) -> Result<Option<Reservation>, VaultError> {
    let AnyConnection::Postgresql(c) = &mut *conn else {
        return Ok(None);
    };
    let all = super::prepared::ReserveNewCard {
        union_id,
        customer_number,
        merchant_id: msg.merchant_id,
        order_number: &msg.order_number,
        kind: msg.kind.as_str(),
        counts_for_limits: msg.kind.moves_money(),
        amount: msg.amount,
        currency: &msg.currency,
        request_digest: &msg.digest,
        now_ms: msg.now_ms,
    };
    let row: Option<NewCardRow> = all.get_result(c).optional()?;
    finish_new_card(conn, msg, row).map(Some)
}

/// What [`super::prepared::ReserveNewCard`] returns: the customer, its `fraud` flag, the new
/// order's id (NULL: not inserted); no row: the order number was taken before.
type NewCardRow = (i64, bool, Option<i64>);

/// A new card's reservation after its statement (alone, or a row of
/// [`super::batch::ReserveNewCards`]).
fn finish_new_card(
    conn: &mut AnyConnection,
    msg: &Reserve,
    row: Option<NewCardRow>,
) -> Result<Reservation, VaultError> {
    match row {
        Some((_, true, _)) => Ok(Reservation::CustomerFraud),
        Some((customer_id, false, Some(order_id))) => Ok(Reservation::Reserved {
            order_id,
            customer_id: Some(customer_id),
            card: None,
            agreement: None,
        }),
        // The order number was taken before the statement (no row) or by a concurrent twin
        // that committed first (no order id): answered as the stored order.
        None | Some((_, false, None)) => replay_existing(conn, msg),
    }
}

/// The customer (union, number) of a reservation [`reserve_new_card`] takes on PostgreSQL (so
/// [`reserve_new_cards_together`] may take it with others); `None`: not one.
pub(crate) fn new_card_customer<'m>(
    conn: &AnyConnection,
    msg: &'m Reserve,
) -> Option<(i64, &'m str)> {
    match (conn, &msg.customer, &msg.agreement, &msg.token, &msg.limits) {
        (AnyConnection::Postgresql(_), Some((union_id, number)), None, None, None) => {
            Some((*union_id, number.as_str()))
        }
        _ => None,
    }
}

/// [`reserve_new_card`] for several new cards' reservations at once, in one statement
/// ([`super::batch::ReserveNewCards`]), inside the caller's transaction or alone. Every message
/// must be one [`new_card_customer`] accepts, no two of one customer or one order number. Each
/// answer is what [`reserve_new_card`] would have answered. `Err` of the whole: the statement
/// failed in the database (a transaction it ran in is lost).
pub(crate) fn reserve_new_cards_together(
    conn: &mut AnyConnection,
    msgs: &[&Reserve],
) -> Result<Vec<Result<Reservation, VaultError>>, VaultError> {
    let mut named = Vec::with_capacity(msgs.len());
    for msg in msgs {
        match new_card_customer(conn, msg) {
            Some(customer) => named.push(customer),
            None => return Err(VaultError::Corrupt("not a new card's reservation".into())),
        }
    }
    let AnyConnection::Postgresql(c) = &mut *conn else {
        return Err(VaultError::Corrupt(
            "set-based reservations on SQLite".into(),
        ));
    };
    let all = super::batch::ReserveNewCards {
        union_id: named.iter().map(|n| n.0).collect(),
        customer_number: named.iter().map(|n| n.1).collect(),
        merchant_id: msgs.iter().map(|m| m.merchant_id).collect(),
        order_number: msgs.iter().map(|m| m.order_number.as_str()).collect(),
        kind: msgs.iter().map(|m| m.kind.as_str()).collect(),
        counts_for_limits: msgs.iter().map(|m| m.kind.moves_money()).collect(),
        amount: msgs.iter().map(|m| m.amount).collect(),
        currency: msgs.iter().map(|m| m.currency.as_str()).collect(),
        request_digest: msgs.iter().map(|m| &m.digest[..]).collect(),
        now_ms: msgs.iter().map(|m| m.now_ms).collect(),
    };
    let rows: Vec<(i64, i64, bool, Option<i64>)> = all.load(c)?;
    let rows = rows
        .into_iter()
        .map(|(n, id, fraud, order)| (n, (id, fraud, order)));
    // At most one row per input row (none where the order number was taken before).
    let by_position = rows_by_position(rows.collect(), msgs.len())?;
    let mut out = Vec::with_capacity(msgs.len());
    for (msg, mut rows) in msgs.iter().zip(by_position) {
        if rows.len() > 1 {
            return Err(VaultError::Corrupt(format!(
                "{} reservation rows for one step",
                rows.len()
            )));
        }
        let answer = finish_new_card(conn, msg, rows.pop())
            .and_then(|done| replay_if_refused(conn, msg, done));
        out.push(answer);
    }
    Ok(out)
}

/// A saved card as a payment reads it: what may be shown, its PAN's ciphertext, key version and
/// AAD version (`crypto::card_aad_for`).
type CardRead = (CardMetaRow, Option<Vec<u8>>, Option<i32>, i32);

/// Takes an existing customer's write lock (see `customers::lock_customer`) and reads its active
/// card `token`: one statement on PostgreSQL ([`super::prepared::BumpCustomerReadCard`]), the
/// lock then the read on SQLite (one writer: nothing can change in between). `None`: no such
/// customer.
fn lock_reading_card(
    conn: &mut AnyConnection,
    union_id: i64,
    customer_number: &str,
    token: &str,
) -> Result<Option<(LockedCustomer, Option<CardRead>)>, VaultError> {
    if let AnyConnection::Postgresql(c) = conn {
        let both = super::prepared::BumpCustomerReadCard {
            union_id,
            customer_number,
            token,
        };
        type Row = (
            i64,
            bool,
            Option<CardMetaRow>,
            Option<Vec<u8>>,
            Option<i32>,
            Option<i32>,
        );
        let row: Option<Row> = both.get_result(c).optional()?;
        return Ok(row.map(|(id, fraud, meta, blob, version, aad_version)| {
            (
                LockedCustomer {
                    id,
                    fraud,
                    created: false,
                },
                // The card's columns are all NULL together; an unknown AAD version fails to open.
                meta.map(|meta| (meta, blob, version, aad_version.unwrap_or(0))),
            )
        }));
    }
    let Some(locked) = lock_customer(conn, union_id, customer_number, false, 0)? else {
        return Ok(None);
    };
    type CardRow = (
        Option<CardMetaRow>,
        Option<Vec<u8>>,
        Option<i32>,
        Option<i32>,
    );
    let read = super::prepared::ReadActiveCard {
        token,
        customer_id: locked.id,
    };
    // SQLite (PostgreSQL read the card with the lock, above; the statement runs there too).
    let row: Option<CardRow> = match conn {
        AnyConnection::Sqlite(c) => read.get_result(c).optional()?,
        AnyConnection::Postgresql(c) => read.get_result(c).optional()?,
    };
    let card = row.and_then(|(meta, blob, version, aad_version)| {
        meta.map(|meta| (meta, blob, version, aad_version.unwrap_or(0)))
    });
    Ok(Some((locked, card)))
}

/// The order insert found (merchant, order number) taken: a repeat, or a concurrent twin that
/// committed first. Answers as the stored order does.
fn replay_existing(conn: &mut AnyConnection, msg: &Reserve) -> Result<Reservation, VaultError> {
    match find_order(conn, msg.merchant_id, &msg.order_number)? {
        Some(row) => replay(row, msg.kind, &msg.digest),
        None => Err(VaultError::Corrupt(format!(
            "order {} neither inserted nor found",
            msg.order_number
        ))),
    }
}

/// A saved card that does not open with its own associated data was moved to another customer
/// or altered in the database (finding 7), or its key is missing here: worth an operator's look.
/// Ids and versions only, never card data.
fn log_unopenable(card_id: i64, key_version: i32, aad_version: i32, error: &VaultError) {
    tracing::error!(
        card_id,
        key_version,
        aad_version,
        %error,
        "a saved card does not open with its own associated data (moved to another customer or \
         altered in the database?); payment refused"
    );
}

fn u32_version(v: i32) -> Result<u32, VaultError> {
    u32::try_from(v).map_err(|_| VaultError::Corrupt("key version".into()))
}

fn open_pan(
    keyring: &Keyring,
    version: impl TryInto<u32>,
    blob: &[u8],
    aad: &[u8],
) -> Result<Pan, VaultError> {
    let version = version
        .try_into()
        .map_err(|_| VaultError::Corrupt("key version".into()))?;
    let plain = keyring.open(version, blob, aad)?;
    let digits =
        std::str::from_utf8(&plain).map_err(|_| VaultError::Corrupt("card plaintext".into()))?;
    Pan::parse(digits).map_err(|_| VaultError::Corrupt("card plaintext".into()))
}

pub(crate) fn agreement_params(
    row: &super::rows::AgreementRow,
) -> Result<RecurringParams, VaultError> {
    let corrupt = || VaultError::Corrupt(format!("agreement {}", row.id));
    Ok(RecurringParams {
        min: crate::domain::Amount::from_minor(row.min_amount).ok_or_else(corrupt)?,
        max: crate::domain::Amount::from_minor(row.max_amount).ok_or_else(corrupt)?,
        period_days: u16::try_from(row.period_days).map_err(|_| corrupt())?,
        max_date: NaiveDate::parse_from_str(&row.max_date, "%Y-%m-%d").map_err(|_| corrupt())?,
    })
}

/// A card to save with an approved payment or registration (R5).
#[derive(Debug, Clone)]
pub struct SaveCard {
    /// The customer's number as the request named it: the card is sealed for it (its owner's
    /// associated data) and saved only if the locked customer has it.
    pub customer_number: String,
    pub pan: Pan,
    pub expiry: Expiry,
    pub holder: String,
}

/// A recurring agreement to create with an approved initial payment (R15).
#[derive(Debug, Clone)]
pub struct NewAgreement {
    /// The initial payment's date (merchant's zone): the first charge waits a period from it.
    pub initial_date: NaiveDate,
    pub pan: Pan,
    pub expiry: Expiry,
    pub holder: String,
    pub params: RecurringParams,
    pub currency: String,
}

/// Step 2 of a payment. Idempotent: an order no longer `In Process` is not completed again
/// (a retry after a commit whose outcome was unknown), its stored reply is returned.
#[derive(Debug, Clone)]
pub struct Complete {
    pub merchant_id: i64,
    pub order_id: i64,
    pub customer_id: Option<i64>,
    pub state: OrderState,
    pub response_code: ResponseCode,
    pub network_tx_id: Option<String>,
    /// The saved card that paid (its counters move on approval).
    pub used_card_id: Option<i64>,
    pub save: Option<SaveCard>,
    pub new_agreement: Option<NewAgreement>,
    /// For recurring charges: (agreement id, previous last-charge date) to restore on decline.
    pub charged_agreement: Option<(i64, Option<String>)>,
    /// The reply; `token` and `card_saved` are filled in here when a card is saved.
    pub result: PaymentResult,
    pub now_ms: i64,
}

#[derive(Debug)]
pub struct Completed {
    pub result: PaymentResult,
    pub snapshot: Option<CustomerSnapshot>,
}
vault_message!(Complete => Completed, complete);

pub fn complete(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: Complete,
) -> Result<Completed, VaultError> {
    conn.transaction(|conn| {
        super::connection::lock_for_writing(conn)?;
        complete_step(conn, keyring, &msg)
    })
}

/// A [`complete`] that shares its transaction with no other step: one statement on
/// PostgreSQL when it can be ([`complete_one_statement`]), run without `BEGIN`/`COMMIT`,
/// committed as the statement ends; every other completion takes [`complete`]'s transaction.
pub(crate) fn complete_alone(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Complete,
) -> Result<Completed, VaultError> {
    match complete_one_statement(conn, keyring, msg) {
        None => complete(conn, keyring, msg.clone()),
        // The statement that saves the card failed as a whole, and the save may be what failed:
        // that must not fail the approved payment (R5). The general path saves in a savepoint.
        Some(Err(VaultError::Query(e))) if msg.save.is_some() => {
            tracing::warn!(order_id = msg.order_id, error = %e, "completing with the card's save failed; completing in steps");
            complete(conn, keyring, msg.clone())
        }
        Some(done) => done,
    }
}

/// The completion as one writing statement on PostgreSQL, when there is no agreement to create
/// or charge: with a card to save and approved, [`complete_saving_card`]; otherwise the claim,
/// with the used card's counter, then at most reads ([`complete_step`], whose reply is final
/// already). `None`: not such a completion (or the saving statement found its snapshot stale or
/// the order claimed already); nothing was written but the customer's version bump.
///
/// Such a step needs no savepoint in a shared transaction: what fails after its one write is a
/// read, so it fails inside the database (the transaction is lost anyway) or wrote nothing. The
/// one exception: a card row of the customer that reads back corrupt (a damaged database) fails
/// the step after the payment and its card were recorded, where a transaction of its own would
/// have rolled them back; a repeat of the order then answers the stored reply.
pub(crate) fn complete_one_statement(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Complete,
) -> Option<Result<Completed, VaultError>> {
    if !matches!(conn, AnyConnection::Postgresql(_))
        || msg.new_agreement.is_some()
        || msg.charged_agreement.is_some()
    {
        return None;
    }
    match (&msg.save, msg.customer_id, msg.state) {
        (Some(save), Some(customer_id), OrderState::Approved) => {
            complete_saving_card(conn, keyring, msg, save, customer_id).transpose()
        }
        (Some(_), _, OrderState::Approved) => None,
        // Not approved: nothing is saved, the claim alone.
        _ => Some(complete_step(conn, keyring, msg)),
    }
}

/// Whether `msg` is a completion [`complete_one_statement`] does as the claim alone, its reply
/// final (no card to save, no agreement), so [`claim_together`] may take it with others.
pub(crate) fn is_plain_claim(conn: &AnyConnection, msg: &Complete) -> bool {
    matches!(conn, AnyConnection::Postgresql(_))
        && msg.new_agreement.is_none()
        && msg.charged_agreement.is_none()
        && !(msg.save.is_some() && msg.state == OrderState::Approved)
}

/// [`complete_step`] for several plain claims ([`is_plain_claim`]) at once, in one statement
/// ([`super::batch::ClaimOrdersCountingCards`]), inside the caller's transaction. An order
/// claimed is answered with its reply as [`complete_step`] answers it (no snapshot: the used
/// card's counters are applied by the caller); `None`: not claimed (completed before, a
/// retry), the general path reads what is stored. `Err` of the whole: the transaction is lost.
pub(crate) fn claim_together(
    conn: &mut AnyConnection,
    msgs: &[&Complete],
) -> Result<Vec<Option<Completed>>, VaultError> {
    let AnyConnection::Postgresql(c) = &mut *conn else {
        return Err(VaultError::Corrupt("set-based claims on SQLite".into()));
    };
    let json: Vec<String> = msgs
        .iter()
        .map(|m| serde_json::to_string(&m.result).map_err(|e| VaultError::Corrupt(e.to_string())))
        .collect::<Result<_, _>>()?;
    let all = super::batch::ClaimOrdersCountingCards {
        id: msgs.iter().map(|m| m.order_id).collect(),
        state: msgs.iter().map(|m| m.state.as_str()).collect(),
        response_code: msgs.iter().map(|m| m.response_code.as_str()).collect(),
        // R12: a decline releases the reservation (see `complete_step`).
        keep_reservation: msgs
            .iter()
            .map(|m| m.state != OrderState::Declined)
            .collect(),
        card_id: msgs.iter().map(|m| m.used_card_id).collect(),
        network_tx_id: msgs.iter().map(|m| m.network_tx_id.as_deref()).collect(),
        result_json: json.iter().map(|j| Some(j.as_str())).collect(),
        // An approved payment with a saved card counts on the card (R5).
        count_card: msgs
            .iter()
            .map(|m| m.used_card_id.is_some() && m.state == OrderState::Approved)
            .collect(),
        now_ms: msgs.iter().map(|m| m.now_ms).collect(),
    };
    let claimed: std::collections::HashSet<i64> = all.load::<i64>(c)?.into_iter().collect();
    Ok(msgs
        .iter()
        .map(|m| {
            claimed.contains(&m.order_id).then(|| Completed {
                result: m.result.clone(),
                snapshot: None,
            })
        })
        .collect())
}

/// An approved payment or registration that saves its new card, completed by one statement
/// ([`super::prepared::CompleteSavingCard`]): the lock, the card (R5, R11, only if the customer
/// as committed accepts saves, R6), the claim with the final reply and the customer's snapshot
/// as it now is, so nothing is read again. `None`: the statement's snapshot was stale, or the
/// order was claimed already (a retry): the general path ([`complete_step`]) takes it.
fn complete_saving_card(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Complete,
    save: &SaveCard,
    customer_id: i64,
) -> Result<Option<Completed>, VaultError> {
    let AnyConnection::Postgresql(c) = &mut *conn else {
        return Ok(None);
    };
    let saving = Saving::prepare(keyring, msg, save, customer_id)?;
    let all = super::prepared::CompleteSavingCard {
        customer_id,
        customer_number: &save.customer_number,
        order_id: msg.order_id,
        state: msg.state.as_str(),
        response_code: msg.response_code.as_str(),
        keep_reservation: msg.state != OrderState::Declined,
        network_tx_id: msg.network_tx_id.as_deref(),
        token: saving.token.as_str(),
        brand: save.pan.brand().as_str(),
        bin: save.pan.bin(),
        last4: save.pan.last4(),
        pan_length: save.pan.len() as i32,
        expiry_month: i32::from(save.expiry.month),
        expiry_year: i32::from(save.expiry.year),
        holder: &save.holder,
        pan_ciphertext: &saving.sealed.blob,
        key_version: saving.sealed.key_version as i32,
        aad_version: CARD_AAD_OWNER,
        fingerprint: &saving.fingerprint[..],
        saved_by_merchant: msg.merchant_id,
        result_saved: &saving.result_saved,
        result_unsaved: &saving.result_unsaved,
        now_ms: msg.now_ms,
    };
    let rows: Vec<(
        bool,
        i64,
        bool,
        bool,
        i64,
        Option<CardMetaRow>,
        Option<bool>,
    )> = all.load(c)?;
    let rows = rows
        .into_iter()
        .map(|(fresh, claimed, deny, fraud, version, meta, saved)| {
            (fresh, claimed > 0, deny, fraud, version, meta, saved)
        })
        .collect();
    finish_saving(msg, customer_id, rows)
}

/// A saving completion's inputs to its statement: the card sealed for its owner (a new token,
/// the number's fingerprint, the ciphertext) and the two replies, saved and not.
struct Saving {
    token: Token,
    fingerprint: [u8; 32],
    sealed: crate::crypto::Sealed,
    result_saved: String,
    result_unsaved: String,
}

impl Saving {
    fn prepare(
        keyring: &Keyring,
        msg: &Complete,
        save: &SaveCard,
        customer_id: i64,
    ) -> Result<Saving, VaultError> {
        let SealedCard {
            token,
            fingerprint,
            sealed,
        } = seal_card(keyring, (customer_id, &save.customer_number), save)?;
        let json = |r: &PaymentResult| {
            serde_json::to_string(r).map_err(|e| VaultError::Corrupt(e.to_string()))
        };
        let mut saved = msg.result.clone();
        saved.token = Some(token.as_str().to_string());
        saved.card_saved = true;
        Ok(Saving {
            result_saved: json(&saved)?,
            result_unsaved: json(&msg.result)?,
            token,
            fingerprint,
            sealed,
        })
    }
}

/// What a saving completion's statement returns for its customer, row by row: fresh, claimed,
/// deny, fraud, version, a kept card (or NULL) and whether it is the one saved now.
type SavingRow = (
    bool,
    bool,
    bool,
    bool,
    i64,
    Option<CardMetaRow>,
    Option<bool>,
);

/// A saving completion after its statement (alone, or its rows of
/// [`super::batch::CompleteSavingCards`]): the reply and the customer's snapshot. `None` (no
/// row: no such customer; a stale snapshot; the order claimed before): the general path.
fn finish_saving(
    msg: &Complete,
    customer_id: i64,
    rows: Vec<SavingRow>,
) -> Result<Option<Completed>, VaultError> {
    let Some(&(fresh, claimed, deny, fraud, version, ..)) = rows.first() else {
        return Ok(None);
    };
    if !fresh || !claimed {
        return Ok(None);
    }
    let mut result = msg.result.clone();
    let mut cards = Vec::with_capacity(rows.len());
    for (.., meta, saved_now) in rows {
        let Some(meta) = meta else { continue };
        let record = CardRecord::try_from(meta)?;
        if saved_now == Some(true) {
            result.token = Some(record.token.clone());
            result.card_saved = true;
        }
        cards.push(record);
    }
    let snapshot = CustomerSnapshot {
        id: customer_id,
        deny,
        fraud,
        version,
        cards,
    };
    Ok(Some(Completed {
        result,
        snapshot: Some(snapshot),
    }))
}

/// A set-based statement's output rows grouped by their input row: `rows` carry the input's
/// position from 1 (`WITH ORDINALITY`); the answer has `count` groups, in input order.
fn rows_by_position<R>(rows: Vec<(i64, R)>, count: usize) -> Result<Vec<Vec<R>>, VaultError> {
    let mut by_position: Vec<Vec<R>> = (0..count).map(|_| Vec::new()).collect();
    for (n, row) in rows {
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| by_position.get_mut(i))
            .ok_or_else(|| VaultError::Corrupt(format!("statement row {n} out of place")))?
            .push(row);
    }
    Ok(by_position)
}

/// The card to save and the customer of a completion [`complete_saving_card`] takes on
/// PostgreSQL (so [`complete_saving_cards_together`] may take it with others); `None`: not one.
pub(crate) fn saving_completion<'m>(
    conn: &AnyConnection,
    msg: &'m Complete,
) -> Option<(&'m SaveCard, i64)> {
    match (conn, &msg.save, msg.customer_id, msg.state) {
        (AnyConnection::Postgresql(_), Some(save), Some(customer_id), OrderState::Approved)
            if msg.new_agreement.is_none() && msg.charged_agreement.is_none() =>
        {
            Some((save, customer_id))
        }
        _ => None,
    }
}

/// [`complete_saving_card`] for several saving completions at once, in one statement
/// ([`super::batch::CompleteSavingCards`]), inside the caller's transaction. Every message must
/// be one [`saving_completion`] accepts, no two of one customer. Each answer is what
/// [`complete_saving_card`] would have answered (`Ok(None)`: the general path takes it). `Err`
/// of the whole: the statement failed in the database, the transaction is lost.
pub(crate) fn complete_saving_cards_together(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msgs: &[&Complete],
) -> Result<Vec<Result<Option<Completed>, VaultError>>, VaultError> {
    let mut answers: Vec<Option<Result<Option<Completed>, VaultError>>> =
        msgs.iter().map(|_| None).collect();
    // Sealed first: a row that cannot be sealed is answered with its error and left out.
    let mut rows = Vec::with_capacity(msgs.len());
    for (i, msg) in msgs.iter().enumerate() {
        let Some((save, customer_id)) = saving_completion(conn, msg) else {
            return Err(VaultError::Corrupt("not a saving completion".into()));
        };
        match Saving::prepare(keyring, msg, save, customer_id) {
            Ok(saving) => rows.push((i, *msg, save, customer_id, saving)),
            Err(e) => answers[i] = Some(Err(e)),
        }
    }
    if !rows.is_empty() {
        let AnyConnection::Postgresql(c) = &mut *conn else {
            return Err(VaultError::Corrupt(
                "set-based completions on SQLite".into(),
            ));
        };
        let all = super::batch::CompleteSavingCards {
            customer_id: rows.iter().map(|r| r.3).collect(),
            customer_number: rows.iter().map(|r| r.2.customer_number.as_str()).collect(),
            order_id: rows.iter().map(|r| r.1.order_id).collect(),
            state: rows.iter().map(|r| r.1.state.as_str()).collect(),
            response_code: rows.iter().map(|r| r.1.response_code.as_str()).collect(),
            keep_reservation: rows
                .iter()
                .map(|r| r.1.state != OrderState::Declined)
                .collect(),
            network_tx_id: rows.iter().map(|r| r.1.network_tx_id.as_deref()).collect(),
            token: rows.iter().map(|r| r.4.token.as_str()).collect(),
            brand: rows.iter().map(|r| r.2.pan.brand().as_str()).collect(),
            bin: rows.iter().map(|r| r.2.pan.bin()).collect(),
            last4: rows.iter().map(|r| r.2.pan.last4()).collect(),
            pan_length: rows.iter().map(|r| r.2.pan.len() as i32).collect(),
            expiry_month: rows.iter().map(|r| i32::from(r.2.expiry.month)).collect(),
            expiry_year: rows.iter().map(|r| i32::from(r.2.expiry.year)).collect(),
            holder: rows.iter().map(|r| r.2.holder.as_str()).collect(),
            pan_ciphertext: rows.iter().map(|r| &r.4.sealed.blob[..]).collect(),
            key_version: rows.iter().map(|r| r.4.sealed.key_version as i32).collect(),
            aad_version: rows.iter().map(|_| CARD_AAD_OWNER).collect(),
            fingerprint: rows.iter().map(|r| &r.4.fingerprint[..]).collect(),
            saved_by_merchant: rows.iter().map(|r| r.1.merchant_id).collect(),
            result_saved: rows.iter().map(|r| r.4.result_saved.as_str()).collect(),
            result_unsaved: rows.iter().map(|r| r.4.result_unsaved.as_str()).collect(),
            now_ms: rows.iter().map(|r| r.1.now_ms).collect(),
        };
        let loaded: Vec<super::batch::CompletedRow> = all.load(c)?;
        let by_position = rows_by_position(loaded, rows.len())?;
        for ((i, msg, _, customer_id, _), found) in rows.into_iter().zip(by_position) {
            answers[i] = Some(finish_saving(msg, customer_id, found));
        }
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| VaultError::Corrupt("a completion left unanswered".into())))
        .collect()
}

/// [`complete`] inside the caller's transaction (or group-commit savepoint): on `Err` the caller
/// must roll back what the step wrote.
pub(crate) fn complete_step(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: &Complete,
) -> Result<Completed, VaultError> {
    let approved = msg.state == OrderState::Approved;
    let mut result = msg.result.clone();
    // Without a card to save or an agreement to create, the reply is final already and one
    // statement both claims and finishes the order.
    let reply_is_final = !(approved && (msg.save.is_some() || msg.new_agreement.is_some()));
    let final_json = if reply_is_final {
        Some(serde_json::to_string(&result).map_err(|e| VaultError::Corrupt(e.to_string()))?)
    } else {
        None
    };
    // Saving a card takes the customer's lock (R11: same number → same card, across
    // processes). Locks are always taken customer first, then order, as in `reserve`:
    // the other order would deadlock with a concurrent twin of this order.
    // The lock also reads the flags as committed (R6): the caller's snapshot may predate them;
    // and the customer's number, which the saved card is bound to.
    let locked = match (approved, &msg.save, msg.customer_id) {
        (true, Some(_), Some(cid)) => super::customers::lock_customer_id(conn, cid)?,
        _ => None,
    };
    // Claim the order: only an order still In Process is completed, so a retry after a
    // commit whose outcome was unknown applies nothing twice.
    let claim = super::prepared::ClaimOrder {
        id: msg.order_id,
        state: msg.state.as_str(),
        response_code: msg.response_code.as_str(),
        // R12: a decline releases the reservation; approval and timeout (in doubt) keep what
        // the reservation counted (nothing for a registration, R13).
        keep_reservation: msg.state != OrderState::Declined,
        card_id: msg.used_card_id,
        network_tx_id: msg.network_tx_id.as_deref(),
        result_json: final_json.as_deref(),
        now_ms: msg.now_ms,
    };
    // An approved payment with a saved card counts on the card (R5), with the claim.
    let count_card = msg.used_card_id.filter(|_| approved);
    let claimed = claim.run(conn, count_card)?;
    if claimed == 0 {
        let stored: Option<String> = orders::table
            .find(msg.order_id)
            .select(orders::result_json)
            .get_result(conn)?;
        let stored = stored
            .as_deref()
            .map(serde_json::from_str::<PaymentResult>)
            .transpose()
            .map_err(|e| {
                VaultError::Corrupt(format!("stored result of order {}: {e}", msg.order_id))
            })?
            .unwrap_or(result);
        let snapshot = match msg.customer_id {
            Some(cid) => snapshot(conn, cid)?,
            None => None,
        };
        return Ok(Completed {
            result: stored,
            snapshot,
        });
    }
    let mut saved_card_id = None;
    if approved {
        if let (Some(save), Some(cid)) = (&msg.save, msg.customer_id) {
            // Savepoint: a failed save is logged and the approved payment stands (R5).
            // The flags as read by the lock above (R6), not from the caller's snapshot.
            let saved = conn.transaction(|conn| {
                let owner = match &locked {
                    Some(l) if status::accepts_save_offers(l.deny, l.fraud) => l,
                    Some(_) => return Ok(None),
                    None => return Err(VaultError::Corrupt(format!("customer {cid} missing"))),
                };
                let customer = (cid, owner.customer_number.as_str());
                save_card(conn, keyring, customer, msg.merchant_id, save, msg.now_ms).map(Some)
            });
            match saved {
                Ok(None) => {}
                Ok(Some((id, token))) => {
                    saved_card_id = Some(id);
                    result.token = Some(token);
                    result.card_saved = true;
                }
                Err(e) => {
                    tracing::error!(order_id = msg.order_id, error = %e, "saving the card failed; payment stands")
                }
            }
        }
        if let Some(agreement) = &msg.new_agreement {
            let order_number = result.order_number.clone();
            if let Err(e) = conn.transaction(|conn| {
                create_agreement(
                    conn,
                    keyring,
                    msg.merchant_id,
                    &order_number,
                    agreement,
                    msg.network_tx_id.as_deref(),
                    msg.now_ms,
                )
            }) {
                tracing::error!(order_id = msg.order_id, error = %e, "creating the recurring agreement failed; payment stands");
            }
        }
        if let Some((agreement_id, _)) = &msg.charged_agreement {
            diesel::update(recurring_agreements::table.find(*agreement_id))
                .set(recurring_agreements::charges.eq(recurring_agreements::charges + 1))
                .execute(conn)?;
        }
    } else if msg.state == OrderState::Declined {
        if let Some((agreement_id, previous)) = &msg.charged_agreement {
            diesel::update(recurring_agreements::table.find(*agreement_id))
                .set(recurring_agreements::last_charge_on.eq(previous.clone()))
                .execute(conn)?;
        }
    }
    if !reply_is_final {
        let json =
            serde_json::to_string(&result).map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let set = super::prepared::SetOrderResult {
            id: msg.order_id,
            card_id: saved_card_id.or(msg.used_card_id),
            result_json: &json,
        };
        on_backend!(&mut *conn, |c| set.execute(c))?;
    }
    // The customer's cards changed only if one was saved; counters of a used card are
    // applied by the caller to its cached copy.
    let snapshot = match (saved_card_id, msg.customer_id) {
        (Some(_), Some(cid)) => snapshot(conn, cid)?,
        _ => None,
    };
    Ok(Completed { result, snapshot })
}

/// A card to save, sealed for its owner: a new token, the number's fingerprint (R11) and the
/// number encrypted with the owner's associated data (finding 7).
struct SealedCard {
    token: Token,
    fingerprint: [u8; 32],
    sealed: crate::crypto::Sealed,
}

/// Seals `save`'s number for `customer` (id, number) under a new token. Sealed anew even when
/// the number turns out saved already: that card keeps its own token and ciphertext, and this
/// one is dropped.
fn seal_card(
    keyring: &Keyring,
    (customer_id, customer_number): (i64, &str),
    save: &SaveCard,
) -> Result<SealedCard, VaultError> {
    let number = save.pan.expose().as_bytes();
    let token = Token::generate();
    let sealed = keyring.seal(
        number,
        &card_owner_aad(customer_id, customer_number, token.as_str()),
    )?;
    Ok(SealedCard {
        fingerprint: keyring.fingerprint(number),
        token,
        sealed,
    })
}

/// Saves the card of `customer` (id, number as read under its lock), or updates the same number
/// already saved (R11), in one statement ([`super::prepared::UpsertCard`]). Returns (card id,
/// token).
fn save_card(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    (customer_id, customer_number): (i64, &str),
    merchant_id: i64,
    save: &SaveCard,
    now_ms: i64,
) -> Result<(i64, String), VaultError> {
    // Bound to its owner (finding 7): the customer is locked, its number was read by the lock's
    // statement.
    let SealedCard {
        token,
        fingerprint,
        sealed,
    } = seal_card(keyring, (customer_id, customer_number), save)?;
    let upsert = super::prepared::UpsertCard {
        token: token.as_str(),
        customer_id,
        brand: save.pan.brand().as_str(),
        bin: save.pan.bin(),
        last4: save.pan.last4(),
        pan_length: save.pan.len() as i32,
        expiry_month: i32::from(save.expiry.month),
        expiry_year: i32::from(save.expiry.year),
        holder: &save.holder,
        pan_ciphertext: &sealed.blob,
        key_version: sealed.key_version as i32,
        aad_version: CARD_AAD_OWNER,
        fingerprint: &fingerprint[..],
        saved_by_merchant: merchant_id,
        // The approved payment or registration that saved it counts as one (R5).
        now_ms,
    };
    Ok(on_backend!(&mut *conn, |c| upsert.get_result(c))?)
}

fn create_agreement(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    merchant_id: i64,
    order_number: &str,
    a: &NewAgreement,
    network_tx_id: Option<&str>,
    now_ms: i64,
) -> Result<(), VaultError> {
    let sealed = keyring.seal(
        a.pan.expose().as_bytes(),
        &agreement_aad(merchant_id, order_number),
    )?;
    let initial_date = a.initial_date.format("%Y-%m-%d").to_string();
    diesel::insert_into(recurring_agreements::table)
        .values(NewAgreementRow {
            merchant_id,
            order_number,
            currency: &a.currency,
            min_amount: a.params.min.minor(),
            max_amount: a.params.max.minor(),
            period_days: i32::from(a.params.period_days),
            max_date: &a.params.max_date.format("%Y-%m-%d").to_string(),
            brand: a.pan.brand().as_str(),
            bin: a.pan.bin(),
            last4: a.pan.last4(),
            pan_length: a.pan.len() as i32,
            expiry_month: i32::from(a.expiry.month),
            expiry_year: i32::from(a.expiry.year),
            holder: &a.holder,
            pan_ciphertext: &sealed.blob,
            key_version: sealed.key_version as i32,
            network_tx_id,
            // The initial payment is the first of the series: the next waits a period (R15).
            last_charge_on: Some(&initial_date),
            charges: 0,
            created_at: now_ms,
        })
        .execute(conn)?;
    Ok(())
}

/// Looks an order up for the merchant's order-state service.
pub struct FindOrder {
    pub merchant_id: i64,
    pub order_number: String,
}
vault_message!(FindOrder => Option<(OrderRecord, Option<CardRecord>)>, find_order_msg);

pub fn find_order_msg(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: FindOrder,
) -> Result<Option<(OrderRecord, Option<CardRecord>)>, VaultError> {
    let Some(row) = find_order(conn, msg.merchant_id, &msg.order_number)? else {
        return Ok(None);
    };
    let card = match row.card_id {
        Some(id) => cards::table
            .find(id)
            .select(CardMetaRow::as_select())
            .get_result(conn)
            .optional()?
            .map(CardRecord::try_from)
            .transpose()?,
        None => None,
    };
    Ok(Some((OrderRecord::try_from(row)?, card)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::connection::SQLITE_MIGRATIONS;
    use diesel_migrations::MigrationHarness;

    /// The turnover read of every limited payment on SQLite (where the one writer runs it for
    /// each payment of a batch) reads no table row: the index holds the amount and the flag.
    #[test]
    fn the_turnover_read_never_leaves_its_index_on_sqlite() {
        #[derive(QueryableByName)]
        struct Step {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let mut conn = diesel::SqliteConnection::establish(":memory:").expect("sqlite");
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .expect("migrations");
        let query = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&turnover_rows(1, "RUB", 0))
            .to_string();
        let sql = query.split(" -- binds").next().expect("the statement");
        let plan: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load(&mut conn)
            .expect("plan");
        let plan: Vec<String> = plan.into_iter().map(|s| s.detail).collect();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].contains("USING COVERING INDEX orders_turnover"),
            "{plan:?}"
        );
    }
}
