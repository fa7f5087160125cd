//! Key status and online rotation: re-encrypts card and agreement ciphertexts to the keyring's
//! current version — and re-seals cards still bound to their token only (AAD version 1) with
//! their owner's associated data (version 2, `crypto::card_owner_aad`) — in small batches while
//! the service runs. Resumable by construction: a batch picks the rows still stale, so a stopped
//! run continues where it stopped. Agreements need no AAD version: their associated data
//! (merchant, order number) has named their owner from the start. The personal account's TOTP
//! secrets (`account_users.totp_secret`, bound to their user) are re-sealed the same way. Each row is rewritten with a
//! conditional update (`WHERE key_version = <old>`), so a row deleted or rotated concurrently is
//! left alone; readers can decrypt both versions meanwhile because old keys stay in the keyring
//! until `status` shows no row uses them.

use diesel::prelude::*;

use super::schema::{account_users, cards, customers, recurring_agreements};
use super::{vault_message, AnyConnection, VaultError};
use crate::crypto::totp::TotpSecret;
use crate::crypto::{agreement_aad, card_aad_for, card_owner_aad, Keyring, CARD_AAD_OWNER};

/// How many ciphertexts use each key version.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    pub current_version: u32,
    /// (version, cards, agreements)
    pub versions: Vec<(i32, i64, i64)>,
    /// (card AAD version, cards): version 1 rows are left to re-seal.
    pub card_aad_versions: Vec<(i32, i64)>,
    /// (version, personal-account users): the TOTP secrets sealed under each key version.
    pub totp_secrets: Vec<(i32, i64)>,
}

pub struct GetKeyStatus;
vault_message!(GetKeyStatus => KeyStatus, key_status);

pub fn key_status(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    _: GetKeyStatus,
) -> Result<KeyStatus, VaultError> {
    let card_counts: Vec<(Option<i32>, i64)> = cards::table
        .filter(cards::key_version.is_not_null())
        .group_by(cards::key_version)
        .select((cards::key_version, diesel::dsl::count_star()))
        .load(conn)?;
    let agreement_counts: Vec<(i32, i64)> = recurring_agreements::table
        .group_by(recurring_agreements::key_version)
        .select((recurring_agreements::key_version, diesel::dsl::count_star()))
        .load(conn)?;
    let mut versions: std::collections::BTreeMap<i32, (i64, i64)> = Default::default();
    for (v, n) in card_counts {
        if let Some(v) = v {
            versions.entry(v).or_default().0 += n;
        }
    }
    for (v, n) in agreement_counts {
        versions.entry(v).or_default().1 += n;
    }
    let card_aad_versions: Vec<(i32, i64)> = cards::table
        .filter(cards::pan_ciphertext.is_not_null())
        .group_by(cards::aad_version)
        .select((cards::aad_version, diesel::dsl::count_star()))
        .order(cards::aad_version)
        .load(conn)?;
    let totp_secrets: Vec<(Option<i32>, i64)> = account_users::table
        .filter(account_users::totp_secret.is_not_null())
        .group_by(account_users::totp_key_version)
        .select((account_users::totp_key_version, diesel::dsl::count_star()))
        .order(account_users::totp_key_version)
        .load(conn)?;
    Ok(KeyStatus {
        current_version: keyring.current_version(),
        versions: versions.into_iter().map(|(v, (c, a))| (v, c, a)).collect(),
        card_aad_versions,
        totp_secrets: totp_secrets
            .into_iter()
            .filter_map(|(v, n)| v.map(|v| (v, n)))
            .collect(),
    })
}

/// Re-encrypts up to `batch` rows that are not on the current key (or, for cards, not on the
/// owner-bound AAD version). Returns how many were rewritten; 0 means rotation is complete.
///
/// Each table's batch is one transaction (one commit, not one per row). On PostgreSQL the batch's
/// rows are locked first with `FOR UPDATE SKIP LOCKED`: rows a payment holds are left for a later
/// batch, so the rotation never waits while it holds other rows and cannot be part of a
/// deadlock; a payment that reaches a row of the batch waits for its commit. Only when every
/// remaining row is held does it wait, for one row, holding none. SQLite has one writer: the
/// transaction takes the write lock first.
pub struct RotateBatch {
    pub batch: i64,
}
vault_message!(RotateBatch => usize, rotate_batch);

pub fn rotate_batch(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: RotateBatch,
) -> Result<usize, VaultError> {
    let current = keyring.current_version() as i32;
    let cards = conn.transaction(|conn| rotate_cards(conn, keyring, current, msg.batch))?;
    let agreements =
        conn.transaction(|conn| rotate_agreements(conn, keyring, current, msg.batch))?;
    let totp = conn.transaction(|conn| rotate_totp_secrets(conn, keyring, current, msg.batch))?;
    Ok(cards + agreements + totp)
}

/// Re-seals up to `batch` TOTP secrets under the current key, bound to their user as before.
/// Each row is rewritten only if its secret is still the one read (a user re-enrolled or
/// removed meanwhile is left alone; its new secret is already current).
fn rotate_totp_secrets(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    current: i32,
    batch: i64,
) -> Result<usize, VaultError> {
    let stale: Vec<(i64, String, Option<Vec<u8>>, Option<i32>)> = account_users::table
        .filter(account_users::totp_secret.is_not_null())
        .filter(account_users::totp_key_version.ne(current))
        .select((
            account_users::merchant_id,
            account_users::login,
            account_users::totp_secret,
            account_users::totp_key_version,
        ))
        .order((account_users::merchant_id, account_users::login))
        .limit(batch)
        .load(conn)?;
    let mut done = 0;
    for (merchant_id, login, blob, version) in stale {
        let (Some(blob), Some(version)) = (blob, version) else {
            continue;
        };
        let secret = TotpSecret::open(keyring, version as u32, &blob, merchant_id, &login)
            .map_err(|e| {
                VaultError::Corrupt(format!(
                    "the TOTP secret of {merchant_id}/{login:?} does not open with its own \
                     associated data (moved, altered, or its key is missing): {e}"
                ))
            })?;
        let sealed = secret.seal(keyring, merchant_id, &login)?;
        done += diesel::update(account_users::table.find((merchant_id, &login)))
            .filter(account_users::totp_key_version.eq(version))
            .filter(account_users::totp_secret.eq(blob.as_slice()))
            .set((
                account_users::totp_secret.eq(Some(sealed.blob.as_slice())),
                account_users::totp_key_version.eq(Some(sealed.key_version as i32)),
            ))
            .execute(conn)?;
    }
    Ok(done)
}

/// Runs `$query(limit)` (a select of stale rows) locking its rows as [`rotate_batch`] explains.
macro_rules! lock_stale {
    ($conn:expr, $batch:expr, $query:expr) => {{
        super::connection::lock_for_writing(&mut *$conn)?;
        match $conn {
            AnyConnection::Postgresql(c) => {
                let rows = $query($batch).for_update().skip_locked().load(c)?;
                if rows.is_empty() {
                    $query(1).for_update().load(c)?
                } else {
                    rows
                }
            }
            AnyConnection::Sqlite(c) => $query($batch).load(c)?,
        }
    }};
}

fn rotate_cards(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    current: i32,
    batch: i64,
) -> Result<usize, VaultError> {
    type StaleCard = (i64, String, i64, Option<Vec<u8>>, Option<i32>, i32);
    // Stale: an older key, or the token-only associated data (finding 7).
    let query = |limit: i64| {
        cards::table
            .filter(
                cards::key_version
                    .ne(current)
                    .or(cards::aad_version.ne(CARD_AAD_OWNER)),
            )
            .filter(cards::pan_ciphertext.is_not_null())
            .select((
                cards::id,
                cards::token,
                cards::customer_id,
                cards::pan_ciphertext,
                cards::key_version,
                cards::aad_version,
            ))
            .order(cards::id)
            .limit(limit)
    };
    let stale: Vec<StaleCard> = lock_stale!(conn, batch, query);
    // The owners' numbers, read in one query (not locked: a customer's number never changes).
    let owner_ids: Vec<i64> = stale.iter().map(|c| c.2).collect();
    let owners: std::collections::HashMap<i64, String> = customers::table
        .filter(customers::id.eq_any(&owner_ids))
        .select((customers::id, customers::customer_number))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect();
    let mut done = 0;
    for (id, token, customer_id, blob, version, aad_version) in stale {
        let (Some(blob), Some(version)) = (blob, version) else {
            continue;
        };
        let number = owners
            .get(&customer_id)
            .ok_or_else(|| VaultError::Corrupt(format!("card {id}: customer missing")))?;
        // Opened as it was sealed, sealed under the current key bound to its owner. A row moved
        // to another customer while on AAD version 2 does not open: the batch fails, loudly.
        let plain = card_aad_for(aad_version, customer_id, number, &token)
            .and_then(|aad| keyring.open(version as u32, &blob, &aad))
            .map_err(|e| {
                VaultError::Corrupt(format!(
                    "card {id} does not open with its own associated data (moved to another \
                     customer, altered, or its key is missing): {e}"
                ))
            })?;
        let sealed = keyring.seal(&plain, &card_owner_aad(customer_id, number, &token))?;
        done += diesel::update(
            cards::table
                .find(id)
                .filter(cards::key_version.eq(version))
                .filter(cards::aad_version.eq(aad_version)),
        )
        .set((
            cards::pan_ciphertext.eq(Some(sealed.blob)),
            cards::key_version.eq(Some(sealed.key_version as i32)),
            cards::aad_version.eq(CARD_AAD_OWNER),
        ))
        .execute(conn)?;
    }
    Ok(done)
}

fn rotate_agreements(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    current: i32,
    batch: i64,
) -> Result<usize, VaultError> {
    let query = |limit: i64| {
        recurring_agreements::table
            .filter(recurring_agreements::key_version.ne(current))
            .select((
                recurring_agreements::id,
                recurring_agreements::merchant_id,
                recurring_agreements::order_number,
                recurring_agreements::pan_ciphertext,
                recurring_agreements::key_version,
            ))
            .order(recurring_agreements::id)
            .limit(limit)
    };
    let stale: Vec<(i64, i64, String, Vec<u8>, i32)> = lock_stale!(conn, batch, query);
    let mut done = 0;
    for (id, merchant_id, order_number, blob, version) in stale {
        let sealed = keyring.reseal(
            version as u32,
            &blob,
            &agreement_aad(merchant_id, &order_number),
        )?;
        done += diesel::update(
            recurring_agreements::table
                .find(id)
                .filter(recurring_agreements::key_version.eq(version)),
        )
        .set((
            recurring_agreements::pan_ciphertext.eq(sealed.blob),
            recurring_agreements::key_version.eq(sealed.key_version as i32),
        ))
        .execute(conn)?;
    }
    Ok(done)
}
