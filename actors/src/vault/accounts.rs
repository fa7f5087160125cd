//! Personal-account users (issue 15 §2): the people who sign in to the merchant's web pages.
//!
//! Separate from the web-service logins (`merchant_users`): a web-service password never opens
//! the personal account, nor the reverse. Passwords are argon2id PHC strings, verified by the
//! engine under the same throttle, lockout and argon2 bound as web-service logins
//! (`engine::merchants`), with sources of their own (`account:<address>`).

use diesel::prelude::*;

use super::audit::{self, AuditAction, AuditActor, Record};
use super::schema::account_users;
use super::{now_ms, vault_message, AnyConnection, VaultError};
use crate::crypto::Keyring;

/// The stored hash of a personal-account user, if the user exists.
pub struct LoadAccountUser {
    pub merchant_id: i64,
    pub login: String,
}
vault_message!(LoadAccountUser => Option<String>, load_account_user);

pub fn load_account_user(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: LoadAccountUser,
) -> Result<Option<String>, VaultError> {
    Ok(account_users::table
        .find((msg.merchant_id, &msg.login))
        .select(account_users::password_hash)
        .first::<String>(conn)
        .optional()?)
}

/// Creates or replaces a personal-account user's password, with its audit row (action
/// `account.user_set`, never the password) in the same transaction. Returns whether it existed.
pub fn set_account_user_audited(
    conn: &mut AnyConnection,
    merchant_id: i64,
    login: &str,
    password_hash: &str,
    actor: AuditActor,
) -> Result<bool, VaultError> {
    conn.transaction(|conn| {
        let existed =
            diesel::delete(account_users::table.find((merchant_id, login))).execute(conn)? > 0;
        diesel::insert_into(account_users::table)
            .values((
                account_users::merchant_id.eq(merchant_id),
                account_users::login.eq(login),
                account_users::password_hash.eq(password_hash),
                account_users::created_at.eq(now_ms()),
            ))
            .execute(conn)?;
        let record = Record::new(actor, AuditAction::AccountUserSet)
            .merchant(merchant_id)
            .detail(serde_json::json!({ "login": login, "created": !existed, "password": "set" }));
        audit::append(conn, &record, now_ms())?;
        Ok(existed)
    })
}
