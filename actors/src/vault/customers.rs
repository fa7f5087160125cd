//! Customers and their cards outside payments: loading a customer's snapshot, the per-customer
//! write lock, card deletion (R10), status flags (R6), the personal-account listing, and the
//! processed-command table that makes order-less commands idempotent (R16).

use diesel::prelude::*;

use super::records::{CardRecord, CustomerSnapshot};
use super::rows::{CardMetaRow, CustomerRow};
use super::schema::{cards, customers, processed_commands};
use super::{on_backend, vault_message, AnyConnection, VaultError};
use crate::crypto::Keyring;
use crate::domain::CommandKind;

/// The outcome of an idempotent command (R16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<T> {
    /// Applied now.
    Done(T),
    /// Already applied earlier: the stored result (JSON), nothing applied now.
    Replay(String),
    /// The id was used before for a different command.
    Conflict,
}

/// Identity of an order-less command: the caller's `command_id` and a keyed digest of its content.
#[derive(Debug, Clone)]
pub struct CommandKey {
    pub merchant_id: i64,
    pub command_id: String,
    pub kind: CommandKind,
    pub digest: [u8; 32],
}

/// Looks a command up: `None` when new, else its replay or conflict.
pub(crate) fn find_command<T>(
    conn: &mut AnyConnection,
    key: &CommandKey,
) -> Result<Option<Applied<T>>, VaultError> {
    let found: Option<(String, Vec<u8>, String)> = processed_commands::table
        .find((key.merchant_id, &key.command_id))
        .select((
            processed_commands::kind,
            processed_commands::request_digest,
            processed_commands::result_json,
        ))
        // A primary-key lookup; no `.first()`: see `prepared::ReadActiveCard`.
        .get_result(conn)
        .optional()?;
    Ok(found.map(|(kind, digest, result)| {
        if kind == key.kind.as_str() && digest == key.digest {
            Applied::Replay(result)
        } else {
            Applied::Conflict
        }
    }))
}

/// Stores a command's result; must run in the transaction of its effect.
pub(crate) fn record_command(
    conn: &mut AnyConnection,
    key: &CommandKey,
    result_json: &str,
    now_ms: i64,
) -> Result<(), VaultError> {
    diesel::insert_into(processed_commands::table)
        .values((
            processed_commands::merchant_id.eq(key.merchant_id),
            processed_commands::command_id.eq(&key.command_id),
            processed_commands::kind.eq(key.kind.as_str()),
            processed_commands::request_digest.eq(&key.digest[..]),
            processed_commands::result_json.eq(result_json),
            processed_commands::created_at.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// A customer under its write lock, with its `fraud` flag as committed (R6).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedCustomer {
    pub id: i64,
    pub fraud: bool,
    /// Inserted by this transaction: it has no orders and no cards yet.
    pub created: bool,
}

/// Takes the customer's write lock by bumping its version (see the vault header); creates the
/// customer first when `create` is set. One statement in the common case (`UPDATE … RETURNING`).
pub(crate) fn lock_customer(
    conn: &mut AnyConnection,
    union_id: i64,
    customer_number: &str,
    create: bool,
    now_ms: i64,
) -> Result<Option<LockedCustomer>, VaultError> {
    match bump_customer(conn, union_id, customer_number)? {
        Some(locked) => Ok(Some(locked)),
        None if create => create_customer(conn, union_id, customer_number, now_ms).map(Some),
        None => Ok(None),
    }
}

fn bump_customer(
    conn: &mut AnyConnection,
    union_id: i64,
    customer_number: &str,
) -> Result<Option<LockedCustomer>, VaultError> {
    let update = super::prepared::BumpCustomer {
        union_id,
        customer_number,
    };
    let row: Option<(i64, bool)> = on_backend!(&mut *conn, |c| update.get_result(c).optional())?;
    Ok(row.map(|(id, fraud)| LockedCustomer {
        id,
        fraud,
        created: false,
    }))
}

/// Creates the customer a lock found missing and returns it locked.
pub(crate) fn create_customer(
    conn: &mut AnyConnection,
    union_id: i64,
    customer_number: &str,
    now_ms: i64,
) -> Result<LockedCustomer, VaultError> {
    let insert = super::prepared::InsertCustomer {
        union_id,
        customer_number,
        now_ms,
    };
    let created: Option<(i64, bool)> =
        on_backend!(&mut *conn, |c| insert.get_result(c).optional())?;
    match created {
        // Ours, uncommitted: nobody else can see it, let alone hold it.
        Some((id, fraud)) => Ok(LockedCustomer {
            id,
            fraud,
            created: true,
        }),
        // A concurrent creator's, whose commit we waited for.
        None => bump_customer(conn, union_id, customer_number)?
            .ok_or_else(|| VaultError::Corrupt("customer neither inserted nor found".into())),
    }
}

/// A customer locked by id: its flags as committed (R6) and its number, read under the lock.
#[derive(Debug, Clone)]
pub(crate) struct LockedById {
    pub deny: bool,
    pub fraud: bool,
    pub customer_number: String,
}

/// Same lock by id, in the same statement reading what a save under the lock needs; `None` if
/// there is no such customer.
pub(crate) fn lock_customer_id(
    conn: &mut AnyConnection,
    customer_id: i64,
) -> Result<Option<LockedById>, VaultError> {
    let update = super::prepared::BumpCustomerId { id: customer_id };
    let row: Option<(bool, bool, String)> =
        on_backend!(&mut *conn, |c| update.get_result(c).optional())?;
    Ok(row.map(|(deny, fraud, customer_number)| LockedById {
        deny,
        fraud,
        customer_number,
    }))
}

/// Reads a customer's snapshot (cards not deleted).
pub(crate) fn snapshot(
    conn: &mut AnyConnection,
    customer_id: i64,
) -> Result<Option<CustomerSnapshot>, VaultError> {
    let rows = customers::table
        .left_join(cards_kept())
        .filter(customers::id.eq(customer_id))
        .select(SnapshotRow::as_select())
        .order(cards::id.asc())
        .load(conn)?;
    snapshot_of(rows)
}

/// The customer's cards a snapshot holds (all but the deleted), as the `ON` of a left join:
/// one statement reads the customer with them (a customer without cards gives one row).
fn cards_kept() -> CardsKept {
    cards::table.on(cards::customer_id
        .eq(customers::id)
        .and(cards::state.ne("deleted")))
}

type CardsKept = diesel::dsl::On<
    cards::table,
    diesel::dsl::And<
        diesel::dsl::Eq<cards::customer_id, customers::id>,
        diesel::dsl::NotEq<cards::state, &'static str>,
    >,
>;

type SnapshotRow = (CustomerRow, Option<CardMetaRow>);

/// Folds the rows of the customer-and-cards join into a snapshot (no rows: no such customer).
fn snapshot_of(rows: Vec<SnapshotRow>) -> Result<Option<CustomerSnapshot>, VaultError> {
    let mut rows = rows.into_iter();
    let Some((customer, first)) = rows.next() else {
        return Ok(None);
    };
    let cards = first
        .into_iter()
        .chain(rows.filter_map(|(_, card)| card))
        .collect();
    CustomerSnapshot::from_rows(customer, cards).map(Some)
}

/// Loads the customer (union, number) if it exists.
pub struct LoadCustomer {
    pub union_id: i64,
    pub customer_number: String,
}
vault_message!(LoadCustomer => Option<CustomerSnapshot>, load_customer);

pub fn load_customer(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: LoadCustomer,
) -> Result<Option<CustomerSnapshot>, VaultError> {
    let rows = customers::table
        .left_join(cards_kept())
        .filter(customers::union_id.eq(msg.union_id))
        .filter(customers::customer_number.eq(&msg.customer_number))
        .select(SnapshotRow::as_select())
        .order(cards::id.asc())
        .load(conn)?;
    snapshot_of(rows)
}

/// Deletes one card (R10): wipes ciphertext and fingerprint, keeps the masked row as `deleted`.
pub struct DeleteCard {
    pub customer_id: i64,
    pub token: String,
    pub command: Option<CommandKey>,
    /// The reply to store with the effect (`{"message":"Token … is removed"}`).
    pub result_json: String,
    pub now_ms: i64,
    /// Appended in the deletion's transaction when a card is deleted (not on replay/not found).
    pub audit: super::audit::Record,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted(CustomerSnapshot),
    /// No such card of this customer (or already deleted).
    NotFound,
}
vault_message!(DeleteCard => Applied<DeleteOutcome>, delete_card);

pub fn delete_card(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: DeleteCard,
) -> Result<Applied<DeleteOutcome>, VaultError> {
    conn.transaction(|conn| {
        super::connection::lock_for_writing(conn)?;
        if let Some(key) = &msg.command {
            if let Some(done) = find_command(conn, key)? {
                return Ok(done);
            }
        }
        if lock_customer_id(conn, msg.customer_id)?.is_none() {
            return Ok(Applied::Done(DeleteOutcome::NotFound));
        }
        let ids = cards::table
            .filter(cards::customer_id.eq(msg.customer_id))
            .filter(cards::token.eq(&msg.token))
            .select(cards::id)
            .load::<i64>(conn)?;
        let wiped = wipe_cards(conn, ids, msg.now_ms)?;
        if wiped == 0 {
            return Ok(Applied::Done(DeleteOutcome::NotFound));
        }
        if let Some(key) = &msg.command {
            record_command(conn, key, &msg.result_json, msg.now_ms)?;
        }
        super::audit::append(conn, &msg.audit, msg.now_ms)?;
        let snap = snapshot(conn, msg.customer_id)?.ok_or_else(|| {
            VaultError::Corrupt("customer vanished inside its transaction".into())
        })?;
        Ok(Applied::Done(DeleteOutcome::Deleted(snap)))
    })
}

/// Marks the given (not yet deleted) cards deleted and wipes their secrets. Returns how many.
fn wipe_cards(conn: &mut AnyConnection, ids: Vec<i64>, now_ms: i64) -> Result<usize, VaultError> {
    Ok(diesel::update(
        cards::table
            .filter(cards::id.eq_any(ids))
            .filter(cards::state.ne("deleted")),
    )
    .set((
        cards::state.eq("deleted"),
        cards::pan_ciphertext.eq(None::<Vec<u8>>),
        cards::key_version.eq(None::<i32>),
        cards::fingerprint.eq(None::<Vec<u8>>),
        cards::deleted_at.eq(Some(now_ms)),
    ))
    .execute(conn)?)
}

/// Sets or clears the merchant's flags (R6). `leave` = the customer leaves the service:
/// `deny` is set and every card deleted. Creates the customer when absent (a merchant may deny a
/// customer before any card is saved).
pub struct SetStatus {
    pub union_id: i64,
    pub customer_number: String,
    pub deny: Option<bool>,
    pub fraud: Option<bool>,
    pub leave: bool,
    pub command: Option<CommandKey>,
    /// Builds the reply stored with the effect, from the committed snapshot.
    pub reply: Box<dyn FnOnce(&CustomerSnapshot) -> String + Send>,
    pub now_ms: i64,
    /// Appended in the change's transaction (not on replay); `leave` adds the deleted tokens.
    pub audit: super::audit::Record,
}
vault_message!(SetStatus => Applied<CustomerSnapshot>, set_status);

pub fn set_status(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: SetStatus,
) -> Result<Applied<CustomerSnapshot>, VaultError> {
    conn.transaction(move |conn| {
        super::connection::lock_for_writing(conn)?;
        if let Some(key) = &msg.command {
            if let Some(done) = find_command(conn, key)? {
                return Ok(done);
            }
        }
        let id = lock_customer(conn, msg.union_id, &msg.customer_number, true, msg.now_ms)?
            .map(|l| l.id)
            .ok_or_else(|| VaultError::Corrupt("customer not created".into()))?;
        let deny = if msg.leave { Some(true) } else { msg.deny };
        if let Some(deny) = deny {
            diesel::update(customers::table.find(id))
                .set(customers::deny.eq(deny))
                .execute(conn)?;
        }
        if let Some(fraud) = msg.fraud {
            diesel::update(customers::table.find(id))
                .set(customers::fraud.eq(fraud))
                .execute(conn)?;
        }
        let mut audit = msg.audit;
        if msg.leave {
            let (ids, tokens): (Vec<i64>, Vec<String>) = cards::table
                .filter(cards::customer_id.eq(id))
                .filter(cards::state.ne("deleted"))
                .select((cards::id, cards::token))
                .load::<(i64, String)>(conn)?
                .into_iter()
                .unzip();
            wipe_cards(conn, ids, msg.now_ms)?;
            if let Some(detail) = audit.detail.as_object_mut() {
                detail.insert("cards_deleted".into(), tokens.into());
            }
        }
        super::audit::append(conn, &audit, msg.now_ms)?;
        let snap =
            snapshot(conn, id)?.ok_or_else(|| VaultError::Corrupt("customer vanished".into()))?;
        if let Some(key) = &msg.command {
            let reply = (msg.reply)(&snap);
            record_command(conn, key, &reply, msg.now_ms)?;
        }
        Ok(Applied::Done(snap))
    })
}

/// The personal-account view (docs/rules.md §4): customers of a union with all their cards, deleted
/// ones included, optionally filtered by a customer-number substring. `after` (keyset): only
/// customer numbers after it, so a page deep in 100k customers costs an index range scan
/// instead of skipping `offset` rows.
pub struct ListCustomers {
    pub union_id: i64,
    pub search: Option<String>,
    pub offset: i64,
    pub limit: i64,
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AccountEntry {
    pub customer_number: String,
    pub deny: bool,
    pub fraud: bool,
    pub created_at: i64,
    pub cards: Vec<CardRecord>,
}
vault_message!(ListCustomers => (i64, Vec<AccountEntry>), list_customers);

/// Returns (total matching, page).
pub fn list_customers(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: ListCustomers,
) -> Result<(i64, Vec<AccountEntry>), VaultError> {
    let pattern = msg.search.as_deref().map(|s| {
        // LIKE metacharacters in the search are taken literally.
        let escaped = s
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let base = || {
        let mut q = customers::table
            .filter(customers::union_id.eq(msg.union_id))
            .into_boxed();
        if let Some(p) = &pattern {
            q = q.filter(customers::customer_number.like(p.clone()).escape('\\'));
        }
        q
    };
    let total: i64 = base().count().get_result(conn)?;
    let mut page = base();
    if let Some(after) = &msg.after {
        page = page.filter(customers::customer_number.gt(after.clone()));
    }
    let rows: Vec<CustomerRow> = page
        .select(CustomerRow::as_select())
        .order(customers::customer_number.asc())
        .offset(msg.offset.max(0))
        .limit(msg.limit.clamp(1, 1000))
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut all_cards: Vec<CardRecord> = cards::table
        .filter(cards::customer_id.eq_any(&ids))
        .select(CardMetaRow::as_select())
        .order(cards::id.asc())
        .load(conn)?
        .into_iter()
        .map(CardRecord::try_from)
        .collect::<Result<_, _>>()?;
    let entries = rows
        .into_iter()
        .map(|r| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                all_cards.drain(..).partition(|c| c.customer_id == r.id);
            all_cards = rest;
            AccountEntry {
                customer_number: r.customer_number,
                deny: r.deny,
                fraud: r.fraud,
                created_at: r.created_at,
                cards: mine,
            }
        })
        .collect();
    Ok((total, entries))
}
