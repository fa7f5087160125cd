//! Merchants, their One Click settings, web-service users and unions (DESIGN §1).
//!
//! A new merchant gets a union of its own (kind `own`). Joining another union moves the
//! merchant's customers with it and is refused, listing the colliding customer numbers, when the
//! target union already uses one of them. Only a merchant that is alone in its union can move
//! (otherwise its customers belong to other merchants too).

use std::collections::HashMap;

use diesel::prelude::*;

use super::records::MerchantRecord;
use super::rows::{LimitRow, MerchantRow};
use super::schema::{customers, merchant_limits, merchant_users, merchants, unions};
use super::{now_ms, on_backend, vault_message, AnyConnection, VaultError};
use crate::crypto::Keyring;

/// Loads one merchant with its limits and users.
pub struct LoadMerchant {
    pub merchant_id: i64,
}
vault_message!(LoadMerchant => Option<MerchantRecord>, load_merchant);

pub fn load_merchant(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: LoadMerchant,
) -> Result<Option<MerchantRecord>, VaultError> {
    let Some(row) = merchants::table
        .find(msg.merchant_id)
        .select(MerchantRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let limits = merchant_limits::table
        .filter(merchant_limits::merchant_id.eq(msg.merchant_id))
        .select(LimitRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|l| {
            let limits =
                crate::domain::Limits::from_minor(l.day_limit, l.week_limit).map_err(|_| {
                    VaultError::Corrupt(format!("limits of merchant {}", l.merchant_id))
                })?;
            Ok((l.currency, limits))
        })
        .collect::<Result<HashMap<_, _>, VaultError>>()?;
    let users = merchant_users::table
        .filter(merchant_users::merchant_id.eq(msg.merchant_id))
        .select((merchant_users::login, merchant_users::password_hash))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    MerchantRecord::from_rows(row, limits, users).map(Some)
}

/// Creates or updates a merchant's settings (admin). `limits` replaces all limits.
#[derive(Debug, Clone)]
pub struct UpsertMerchant {
    pub id: i64,
    pub name: String,
    pub oneclick_enabled: bool,
    pub mode: String,
    pub need_cvc: bool,
    pub list_threshold: i32,
    pub time_zone: String,
    /// Base64 HMAC key (R2). Not card key material.
    pub signature_key: String,
    pub mit_cof: bool,
    /// (currency, day, week) in minor units.
    pub limits: Vec<(String, Option<i64>, Option<i64>)>,
}
vault_message!(UpsertMerchant => (), upsert_merchant);

pub fn upsert_merchant(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: UpsertMerchant,
) -> Result<(), VaultError> {
    conn.transaction(|conn| {
        let existing: Option<i64> = merchants::table
            .find(msg.id)
            .select(merchants::union_id)
            .first(conn)
            .optional()?;
        let union_id = match existing {
            Some(u) => u,
            None => create_union_in(conn, "own", &format!("merchant {}", msg.id))?,
        };
        let row = MerchantRow {
            id: msg.id,
            name: msg.name.clone(),
            union_id,
            oneclick_enabled: msg.oneclick_enabled,
            mode: msg.mode.clone(),
            need_cvc: msg.need_cvc,
            list_threshold: msg.list_threshold,
            time_zone: msg.time_zone.clone(),
            signature_key: msg.signature_key.clone(),
            mit_cof: msg.mit_cof,
            updated_at: now_ms(),
        };
        if existing.is_some() {
            diesel::update(merchants::table.find(msg.id))
                .set(&row)
                .execute(conn)?;
        } else {
            diesel::insert_into(merchants::table)
                .values(&row)
                .execute(conn)?;
        }
        diesel::delete(merchant_limits::table.filter(merchant_limits::merchant_id.eq(msg.id)))
            .execute(conn)?;
        for (currency, day, week) in &msg.limits {
            diesel::insert_into(merchant_limits::table)
                .values(LimitRow {
                    merchant_id: msg.id,
                    currency: currency.clone(),
                    day_limit: *day,
                    week_limit: *week,
                })
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Sets (creates or replaces) a web-service user's argon2 hash.
pub struct SetMerchantUser {
    pub merchant_id: i64,
    pub login: String,
    pub password_hash: String,
}
vault_message!(SetMerchantUser => (), set_merchant_user);

pub fn set_merchant_user(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: SetMerchantUser,
) -> Result<(), VaultError> {
    conn.transaction(|conn| {
        diesel::delete(
            merchant_users::table
                .filter(merchant_users::merchant_id.eq(msg.merchant_id))
                .filter(merchant_users::login.eq(&msg.login)),
        )
        .execute(conn)?;
        diesel::insert_into(merchant_users::table)
            .values((
                merchant_users::merchant_id.eq(msg.merchant_id),
                merchant_users::login.eq(&msg.login),
                merchant_users::password_hash.eq(&msg.password_hash),
            ))
            .execute(conn)?;
        Ok(())
    })
}

fn create_union_in(conn: &mut AnyConnection, kind: &str, name: &str) -> Result<i64, VaultError> {
    let insert = diesel::insert_into(unions::table)
        .values((
            unions::kind.eq(kind),
            unions::name.eq(name),
            unions::created_at.eq(now_ms()),
        ))
        .returning(unions::id);
    Ok(on_backend!(conn, |c| insert.get_result(c))?)
}

/// Creates a union of kind `legal_entity`, `legal_entity_group` or `merchant_group`.
pub struct CreateUnion {
    pub kind: String,
    pub name: String,
}
vault_message!(CreateUnion => i64, create_union);

pub fn create_union(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: CreateUnion,
) -> Result<i64, VaultError> {
    conn.transaction(|conn| create_union_in(conn, &msg.kind, &msg.name))
}

/// Moves a merchant (and its customers) into a union.
pub struct JoinUnion {
    pub merchant_id: i64,
    pub union_id: i64,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined {
        customers_moved: usize,
    },
    UnknownMerchant,
    UnknownUnion,
    /// The merchant shares its current union with other merchants.
    SharedUnion,
    /// These customer numbers exist in both unions.
    Collision(Vec<String>),
}
vault_message!(JoinUnion => JoinOutcome, join_union);

pub fn join_union(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: JoinUnion,
) -> Result<JoinOutcome, VaultError> {
    conn.transaction(|conn| {
        let Some(current) = merchants::table
            .find(msg.merchant_id)
            .select(merchants::union_id)
            .first::<i64>(conn)
            .optional()?
        else {
            return Ok(JoinOutcome::UnknownMerchant);
        };
        if unions::table
            .find(msg.union_id)
            .select(unions::id)
            .first::<i64>(conn)
            .optional()?
            .is_none()
        {
            return Ok(JoinOutcome::UnknownUnion);
        }
        if current == msg.union_id {
            return Ok(JoinOutcome::Joined { customers_moved: 0 });
        }
        let others: i64 = merchants::table
            .filter(merchants::union_id.eq(current))
            .filter(merchants::id.ne(msg.merchant_id))
            .count()
            .get_result(conn)?;
        if others > 0 {
            return Ok(JoinOutcome::SharedUnion);
        }
        let moving: Vec<String> = customers::table
            .filter(customers::union_id.eq(current))
            .select(customers::customer_number)
            .load(conn)?;
        let mut collisions: Vec<String> = Vec::new();
        for chunk in moving.chunks(500) {
            collisions.extend(
                customers::table
                    .filter(customers::union_id.eq(msg.union_id))
                    .filter(customers::customer_number.eq_any(chunk))
                    .select(customers::customer_number)
                    .load::<String>(conn)?,
            );
        }
        if !collisions.is_empty() {
            collisions.sort();
            return Ok(JoinOutcome::Collision(collisions));
        }
        let moved = diesel::update(customers::table.filter(customers::union_id.eq(current)))
            .set(customers::union_id.eq(msg.union_id))
            .execute(conn)?;
        diesel::update(merchants::table.find(msg.merchant_id))
            .set(merchants::union_id.eq(msg.union_id))
            .execute(conn)?;
        Ok(JoinOutcome::Joined {
            customers_moved: moved,
        })
    })
}
