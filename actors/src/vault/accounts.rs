//! Personal-account users (issue 15 §2): the people who sign in to the merchant's web pages.
//!
//! Separate from the web-service logins (`merchant_users`): a web-service password never opens
//! the personal account, nor the reverse. Passwords are argon2id PHC strings, verified by the
//! engine under the same throttle, lockout and argon2 bound as web-service logins
//! (`engine::merchants`), with sources of their own (`account:<address>`).
//!
//! The optional TOTP second factor (docs/account.md): a user's secret is stored only sealed by
//! the keyring, bound to (merchant, login) and its key version (`crypto::totp`). Invariants kept
//! here:
//! - a code is accepted once: [`accept_totp_code`] accepts a step only by a compare-and-set
//!   `UPDATE … SET totp_last_step = :step WHERE totp_last_step IS NULL OR totp_last_step < :step`
//!   (and the secret is still the one checked), so a replayed code — even two requests at once,
//!   on any replica — finds the step taken and is refused;
//! - the secret is opened in the vault worker and dropped there (zeroized): it never travels in a
//!   message, a reply or a log;
//! - enrolment and removal write their audit rows (`account.totp_enrolled`,
//!   `account.totp_removed`, never the secret) in the same transaction; setting a password keeps
//!   the second factor.

use diesel::prelude::*;

use super::audit::{self, AuditAction, AuditActor, Record};
use super::schema::account_users;
use super::{now_ms, vault_message, AnyConnection, VaultError};
use crate::crypto::totp::{matching_step, TotpSecret};
use crate::crypto::Keyring;
use crate::secret::SecretString;

/// What sign-in needs of a personal-account user.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountUser {
    /// argon2id PHC string.
    pub password_hash: String,
    /// The user has a TOTP second factor: sign-in and changes need a code.
    pub totp: bool,
}

impl std::fmt::Debug for AccountUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUser")
            .field("password_hash", &"[REDACTED]")
            .field("totp", &self.totp)
            .finish()
    }
}

/// A personal-account user, if the user exists.
pub struct LoadAccountUser {
    pub merchant_id: i64,
    pub login: String,
}
vault_message!(LoadAccountUser => Option<AccountUser>, load_account_user);

pub fn load_account_user(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: LoadAccountUser,
) -> Result<Option<AccountUser>, VaultError> {
    Ok(account_users::table
        .find((msg.merchant_id, &msg.login))
        .select((
            account_users::password_hash,
            account_users::totp_secret.is_not_null(),
        ))
        .first::<(String, bool)>(conn)
        .optional()?
        .map(|(password_hash, totp)| AccountUser {
            password_hash,
            totp,
        }))
}

/// Creates a personal-account user or replaces its password (keeping its second factor), with
/// its audit row (action `account.user_set`, never the password) in the same transaction.
/// Returns whether it existed.
pub fn set_account_user_audited(
    conn: &mut AnyConnection,
    merchant_id: i64,
    login: &str,
    password_hash: &str,
    actor: AuditActor,
) -> Result<bool, VaultError> {
    conn.transaction(|conn| {
        let existed = diesel::update(account_users::table.find((merchant_id, login)))
            .set(account_users::password_hash.eq(password_hash))
            .execute(conn)?
            > 0;
        if !existed {
            diesel::insert_into(account_users::table)
                .values((
                    account_users::merchant_id.eq(merchant_id),
                    account_users::login.eq(login),
                    account_users::password_hash.eq(password_hash),
                    account_users::created_at.eq(now_ms()),
                ))
                .execute(conn)?;
        }
        let record = Record::new(actor, AuditAction::AccountUserSet)
            .merchant(merchant_id)
            .detail(serde_json::json!({ "login": login, "created": !existed, "password": "set" }));
        audit::append(conn, &record, now_ms())?;
        Ok(existed)
    })
}

/// What [`set_account_user_totp_audited`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpChange {
    /// A secret was stored; `replaced`: the user had one before (its codes no longer work).
    Enrolled { replaced: bool },
    /// The user's secret was removed.
    Removed,
    /// Removal asked, and the user had no second factor: nothing written, nothing audited.
    NothingToRemove,
    /// No such personal-account user.
    UnknownUser,
}

/// Enrols a user in TOTP with `secret` (sealed here under the keyring's current key, bound to the
/// user) or, with `None`, removes the user's second factor; with its audit row
/// (`account.totp_enrolled` / `account.totp_removed`, the key version, never the secret) in the
/// same transaction. A new secret starts with no accepted step.
pub fn set_account_user_totp_audited(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    merchant_id: i64,
    login: &str,
    secret: Option<&TotpSecret>,
    actor: AuditActor,
) -> Result<TotpChange, VaultError> {
    let sealed = secret
        .map(|s| s.seal(keyring, merchant_id, login))
        .transpose()?;
    conn.transaction(|conn| {
        let had: Option<bool> = account_users::table
            .find((merchant_id, login))
            .select(account_users::totp_secret.is_not_null())
            .first(conn)
            .optional()?;
        let Some(had) = had else {
            return Ok(TotpChange::UnknownUser);
        };
        let (change, action, detail) = match &sealed {
            Some(sealed) => {
                let version = i32::try_from(sealed.key_version)
                    .map_err(|_| VaultError::Corrupt("key version beyond i32".into()))?;
                diesel::update(account_users::table.find((merchant_id, login)))
                    .set((
                        account_users::totp_secret.eq(Some(sealed.blob.as_slice())),
                        account_users::totp_key_version.eq(Some(version)),
                        account_users::totp_last_step.eq(None::<i64>),
                    ))
                    .execute(conn)?;
                (
                    TotpChange::Enrolled { replaced: had },
                    AuditAction::AccountTotpEnrolled,
                    serde_json::json!({
                        "login": login, "totp": "set", "replaced": had, "key_version": version,
                    }),
                )
            }
            None if !had => return Ok(TotpChange::NothingToRemove),
            None => {
                diesel::update(account_users::table.find((merchant_id, login)))
                    .set((
                        account_users::totp_secret.eq(None::<Vec<u8>>),
                        account_users::totp_key_version.eq(None::<i32>),
                        account_users::totp_last_step.eq(None::<i64>),
                    ))
                    .execute(conn)?;
                (
                    TotpChange::Removed,
                    AuditAction::AccountTotpRemoved,
                    serde_json::json!({ "login": login, "totp": "removed" }),
                )
            }
        };
        let record = Record::new(actor, action)
            .merchant(merchant_id)
            .detail(detail);
        audit::append(conn, &record, now_ms())?;
        Ok(change)
    })
}

/// Checks a user's one-time code at `unix_secs` and, when it is right, takes its time step
/// (compare-and-set; see the module header). The code never leaves this message.
pub struct AcceptTotpCode {
    pub merchant_id: i64,
    pub login: String,
    pub code: SecretString,
    pub unix_secs: u64,
}

/// What [`AcceptTotpCode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The user has no second factor (or does not exist): nothing to check.
    NoTotp,
    /// The code is right and its step was not used before: it is now.
    Accepted,
    /// The code is right but its step (or a later one) was already accepted: a replay.
    Replayed,
    /// Not a code of the current step ±1 (or missing, or malformed).
    Wrong,
}
vault_message!(AcceptTotpCode => CodeCheck, accept_totp_code);

pub fn accept_totp_code(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: AcceptTotpCode,
) -> Result<CodeCheck, VaultError> {
    let row: Option<(Option<Vec<u8>>, Option<i32>, Option<i64>)> = account_users::table
        .find((msg.merchant_id, &msg.login))
        .select((
            account_users::totp_secret,
            account_users::totp_key_version,
            account_users::totp_last_step,
        ))
        .first(conn)
        .optional()?;
    let Some((Some(blob), Some(version), last_step)) = row else {
        return Ok(CodeCheck::NoTotp);
    };
    let version = u32::try_from(version)
        .map_err(|_| VaultError::Corrupt("negative TOTP key version".into()))?;
    let secret = TotpSecret::open(keyring, version, &blob, msg.merchant_id, &msg.login)?;
    let Some(step) = matching_step(&secret, msg.code.expose(), msg.unix_secs) else {
        return Ok(CodeCheck::Wrong);
    };
    drop(secret);
    let step = i64::try_from(step).map_err(|_| VaultError::Corrupt("TOTP step".into()))?;
    if last_step.is_some_and(|last| last >= step) {
        return Ok(CodeCheck::Replayed);
    }
    // The compare-and-set: of concurrent requests with this code, exactly one updates the row.
    let taken = diesel::update(account_users::table.find((msg.merchant_id, &msg.login)))
        .filter(
            account_users::totp_last_step
                .is_null()
                .or(account_users::totp_last_step.lt(step)),
        )
        .filter(account_users::totp_secret.eq(blob.as_slice()))
        .set(account_users::totp_last_step.eq(step))
        .execute(conn)?;
    Ok(if taken == 1 {
        CodeCheck::Accepted
    } else {
        CodeCheck::Replayed
    })
}
