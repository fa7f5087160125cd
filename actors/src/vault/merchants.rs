//! Merchants, their One Click settings, web-service users and unions (docs/rules.md §1).
//!
//! A new merchant gets a union of its own (kind `own`). Joining another union moves the
//! merchant's customers with it and is refused, listing the colliding customer numbers, when the
//! target union already uses one of them. Only a merchant that is alone in its union can move
//! (otherwise its customers belong to other merchants too).
//!
//! Admin changes ([`save_merchant`], [`rotate_signing_key`] and the `*_audited` wrappers) never
//! surprise: they change only the fields named, never the R2 signature key except by an explicit
//! rotation, return what changed (old → new, secrets as `"set"`), and append their audit row in
//! the same transaction ([`super::audit`]). [`upsert_merchant`] (replace everything) remains
//! for seeding test and demo data.
//!
//! Failed logins (`login_lockouts`): counted per (merchant, login, source) in the database so
//! every replica sees one count; the policy (how many, how long, what a source is) lives in
//! `engine::merchants`.

use std::collections::HashMap;

use diesel::prelude::*;

use super::audit::{self, AuditAction, AuditActor, Record};
use super::records::MerchantRecord;
use super::rows::{LimitRow, MerchantRow};
use super::schema::{
    customers, login_lockouts, merchant_limits, merchant_users, merchants, unions,
};
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
            // Left as they are on update (`None` in a changeset), NULL on insert.
            previous_signature_key: None,
            previous_signature_key_until: None,
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

// ---- admin changes that never surprise (appended; see the module header) -----------------------

/// The merchant settings an admin names; `None` (or no limit entry) leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct MerchantChanges {
    pub name: Option<String>,
    pub oneclick_enabled: Option<bool>,
    /// `standard` | `saved_cards_only` | `save_only` (validated by the caller).
    pub mode: Option<String>,
    pub need_cvc: Option<bool>,
    pub list_threshold: Option<i32>,
    /// IANA zone (validated by the caller).
    pub time_zone: Option<String>,
    pub mit_cof: Option<bool>,
    /// (currency, day, week) in minor units: replaces the limits of the currencies named only.
    pub limits: Vec<(String, Option<i64>, Option<i64>)>,
}

/// One changed field as printed and audited: `field: old → new` (`None` = absent; secrets are
/// never shown, only `"set"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Change {
    fn of(field: &str, old: Option<String>, new: Option<String>) -> Change {
        Change {
            field: field.to_string(),
            old,
            new,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        write!(
            f,
            "{}: {} → {}",
            self.field,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// What an admin is recorded as having done in the trail's detail.
fn changes_detail(changes: &[Change]) -> serde_json::Value {
    serde_json::json!({ "changes": changes })
}

/// Creates a merchant, or updates only the named fields of an existing one (admin).
#[derive(Debug, Clone)]
pub struct SaveMerchant {
    pub id: i64,
    pub changes: MerchantChanges,
    /// Base64 R2 key: required to create, refused on an existing merchant (see
    /// [`RotateSigningKey`]).
    pub signature_key: Option<String>,
    pub actor: AuditActor,
}

/// The result of [`SaveMerchant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    Created(Vec<Change>),
    Updated(Vec<Change>),
    /// Every named field already had the value asked for: nothing written, nothing audited.
    Unchanged,
    /// Creating a merchant needs this field.
    MissingForCreation(&'static str),
    /// The merchant exists: its signature key changes only by an explicit rotation.
    SigningKeyExists,
}
vault_message!(SaveMerchant => SaveOutcome, save_merchant);

fn shown<T: ToString>(v: &T) -> Option<String> {
    Some(v.to_string())
}

fn shown_minor(v: Option<i64>) -> Option<String> {
    Some(v.map_or_else(|| "unlimited".to_string(), |m| m.to_string()))
}

pub fn save_merchant(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: SaveMerchant,
) -> Result<SaveOutcome, VaultError> {
    conn.transaction(|conn| {
        super::connection::lock_for_writing(conn)?;
        let existing = merchants::table
            .find(msg.id)
            .select(MerchantRow::as_select())
            .first(conn)
            .optional()?;
        let c = &msg.changes;
        let mut changes = Vec::new();
        let (action, row) = match existing {
            None => {
                let Some(name) = c.name.clone() else {
                    return Ok(SaveOutcome::MissingForCreation("name"));
                };
                let Some(signature_key) = msg.signature_key.clone() else {
                    return Ok(SaveOutcome::MissingForCreation("signature_key"));
                };
                let union_id = create_union_in(conn, "own", &format!("merchant {}", msg.id))?;
                let row = MerchantRow {
                    id: msg.id,
                    name,
                    union_id,
                    oneclick_enabled: c.oneclick_enabled.unwrap_or(true),
                    mode: c.mode.clone().unwrap_or_else(|| "standard".into()),
                    need_cvc: c.need_cvc.unwrap_or(crate::domain::cvc::DEFAULT_NEED_CVC),
                    list_threshold: c.list_threshold.unwrap_or(1),
                    time_zone: c
                        .time_zone
                        .clone()
                        .unwrap_or_else(|| "Europe/Moscow".into()),
                    signature_key,
                    mit_cof: c.mit_cof.unwrap_or(false),
                    updated_at: now_ms(),
                    previous_signature_key: None,
                    previous_signature_key_until: None,
                };
                diesel::insert_into(merchants::table)
                    .values(&row)
                    .execute(conn)?;
                changes.extend([
                    Change::of("name", None, shown(&row.name)),
                    Change::of("union_id", None, shown(&row.union_id)),
                    Change::of("oneclick_enabled", None, shown(&row.oneclick_enabled)),
                    Change::of("mode", None, shown(&row.mode)),
                    Change::of("need_cvc", None, shown(&row.need_cvc)),
                    Change::of("list_threshold", None, shown(&row.list_threshold)),
                    Change::of("time_zone", None, shown(&row.time_zone)),
                    Change::of("signature_key", None, Some("set".into())),
                    Change::of("mit_cof", None, shown(&row.mit_cof)),
                ]);
                (AuditAction::MerchantCreated, row)
            }
            Some(old) => {
                if msg.signature_key.is_some() {
                    return Ok(SaveOutcome::SigningKeyExists);
                }
                let mut row = old.clone();
                macro_rules! apply {
                    ($field:ident) => {
                        if let Some(v) = &c.$field {
                            if *v != old.$field {
                                changes.push(Change::of(
                                    stringify!($field),
                                    shown(&old.$field),
                                    shown(v),
                                ));
                                row.$field = v.clone();
                            }
                        }
                    };
                }
                apply!(name);
                apply!(oneclick_enabled);
                apply!(mode);
                apply!(need_cvc);
                apply!(list_threshold);
                apply!(time_zone);
                apply!(mit_cof);
                (AuditAction::MerchantUpdated, row)
            }
        };
        for (currency, day, week) in &c.limits {
            let before: Option<(Option<i64>, Option<i64>)> = merchant_limits::table
                .find((msg.id, currency))
                .select((merchant_limits::day_limit, merchant_limits::week_limit))
                .first(conn)
                .optional()?;
            let (old_day, old_week) = match before {
                Some((d, w)) => (Some(d), Some(w)),
                None => (None, None),
            };
            if old_day == Some(*day) && old_week == Some(*week) {
                continue;
            }
            if old_day != Some(*day) {
                changes.push(Change::of(
                    &format!("limit.{currency}.day_minor"),
                    old_day.and_then(shown_minor),
                    shown_minor(*day),
                ));
            }
            if old_week != Some(*week) {
                changes.push(Change::of(
                    &format!("limit.{currency}.week_minor"),
                    old_week.and_then(shown_minor),
                    shown_minor(*week),
                ));
            }
            diesel::delete(merchant_limits::table.find((msg.id, currency))).execute(conn)?;
            diesel::insert_into(merchant_limits::table)
                .values(LimitRow {
                    merchant_id: msg.id,
                    currency: currency.clone(),
                    day_limit: *day,
                    week_limit: *week,
                })
                .execute(conn)?;
        }
        if changes.is_empty() {
            return Ok(SaveOutcome::Unchanged);
        }
        if action == AuditAction::MerchantUpdated {
            diesel::update(merchants::table.find(msg.id))
                .set((
                    merchants::name.eq(&row.name),
                    merchants::oneclick_enabled.eq(row.oneclick_enabled),
                    merchants::mode.eq(&row.mode),
                    merchants::need_cvc.eq(row.need_cvc),
                    merchants::list_threshold.eq(row.list_threshold),
                    merchants::time_zone.eq(&row.time_zone),
                    merchants::mit_cof.eq(row.mit_cof),
                    merchants::updated_at.eq(now_ms()),
                ))
                .execute(conn)?;
        }
        let record = Record::new(msg.actor.clone(), action)
            .merchant(msg.id)
            .detail(changes_detail(&changes));
        audit::append(conn, &record, now_ms())?;
        Ok(if action == AuditAction::MerchantCreated {
            SaveOutcome::Created(changes)
        } else {
            SaveOutcome::Updated(changes)
        })
    })
}

/// Replaces a merchant's R2 signature key; the previous key keeps verifying for `overlap_ms`
/// (0: it stops at once). One previous key is kept: rotating again inside an overlap ends the
/// older key's overlap.
#[derive(Debug, Clone)]
pub struct RotateSigningKey {
    pub merchant_id: i64,
    /// Base64 of the new key (validated by the caller).
    pub new_key: String,
    pub overlap_ms: i64,
    pub actor: AuditActor,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    UnknownMerchant,
    /// Rotated; the previous key verifies until this time (ms, UTC), if at all.
    Rotated {
        previous_until: Option<i64>,
        changes: Vec<Change>,
    },
}
vault_message!(RotateSigningKey => RotateOutcome, rotate_signing_key);

pub fn rotate_signing_key(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: RotateSigningKey,
) -> Result<RotateOutcome, VaultError> {
    conn.transaction(|conn| {
        super::connection::lock_for_writing(conn)?;
        let Some(old_key) = merchants::table
            .find(msg.merchant_id)
            .select(merchants::signature_key)
            .first::<String>(conn)
            .optional()?
        else {
            return Ok(RotateOutcome::UnknownMerchant);
        };
        let previous_until = (msg.overlap_ms > 0).then(|| msg.now_ms + msg.overlap_ms);
        let previous_key = previous_until.map(|_| old_key);
        diesel::update(merchants::table.find(msg.merchant_id))
            .set((
                merchants::signature_key.eq(&msg.new_key),
                merchants::previous_signature_key.eq(previous_key),
                merchants::previous_signature_key_until.eq(previous_until),
                merchants::updated_at.eq(msg.now_ms),
            ))
            .execute(conn)?;
        let until_text = previous_until.map(audit::format_ms);
        let changes = vec![
            Change::of(
                "signature_key",
                Some("set".into()),
                Some("set (new)".into()),
            ),
            Change::of(
                "previous_signature_key_verifies_until",
                None,
                Some(until_text.clone().unwrap_or_else(|| "never".into())),
            ),
        ];
        let record = Record::new(msg.actor.clone(), AuditAction::SigningKeyRotated)
            .merchant(msg.merchant_id)
            .detail(serde_json::json!({
                "overlap_ms": msg.overlap_ms,
                "previous_key_verifies_until": until_text,
            }));
        audit::append(conn, &record, msg.now_ms)?;
        Ok(RotateOutcome::Rotated {
            previous_until,
            changes,
        })
    })
}

/// [`set_merchant_user`] with its audit row in the same transaction; returns what changed.
pub fn set_merchant_user_audited(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: SetMerchantUser,
    actor: AuditActor,
) -> Result<Vec<Change>, VaultError> {
    conn.transaction(|conn| {
        let existed = merchant_users::table
            .find((msg.merchant_id, &msg.login))
            .select(merchant_users::login)
            .first::<String>(conn)
            .optional()?
            .is_some();
        let (merchant_id, login) = (msg.merchant_id, msg.login.clone());
        set_merchant_user(conn, keyring, msg)?;
        let changes = vec![Change::of(
            &format!("user.{login}.password"),
            existed.then(|| "set".to_string()),
            Some("set (new)".into()),
        )];
        let record = Record::new(actor, AuditAction::MerchantUserSet)
            .merchant(merchant_id)
            .detail(serde_json::json!({ "login": login, "created": !existed, "password": "set" }));
        audit::append(conn, &record, now_ms())?;
        Ok(changes)
    })
}

/// [`create_union`] with its audit row in the same transaction.
pub fn create_union_audited(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: CreateUnion,
    actor: AuditActor,
) -> Result<i64, VaultError> {
    conn.transaction(|conn| {
        let (kind, name) = (msg.kind.clone(), msg.name.clone());
        let id = create_union(conn, keyring, msg)?;
        let record = Record::new(actor, AuditAction::UnionCreated)
            .detail(serde_json::json!({ "union_id": id, "kind": kind, "name": name }));
        audit::append(conn, &record, now_ms())?;
        Ok(id)
    })
}

/// [`join_union`] with its audit row (only when joined) in the same transaction.
pub fn join_union_audited(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: JoinUnion,
    actor: AuditActor,
) -> Result<JoinOutcome, VaultError> {
    conn.transaction(|conn| {
        let (merchant_id, union_id) = (msg.merchant_id, msg.union_id);
        let before: Option<i64> = merchants::table
            .find(merchant_id)
            .select(merchants::union_id)
            .first(conn)
            .optional()?;
        let outcome = join_union(conn, keyring, msg)?;
        if let JoinOutcome::Joined { customers_moved } = &outcome {
            let record = Record::new(actor, AuditAction::UnionJoined)
                .merchant(merchant_id)
                .detail(serde_json::json!({
                    "changes": [Change::of("union_id", before.as_ref().and_then(shown), shown(&union_id))],
                    "customers_moved": customers_moved,
                }));
            audit::append(conn, &record, now_ms())?;
        }
        Ok(outcome)
    })
}

/// [`upsert_merchant`] (every setting replaced, for the demo merchant) with its audit row.
pub fn upsert_merchant_audited(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    msg: UpsertMerchant,
    actor: AuditActor,
) -> Result<(), VaultError> {
    conn.transaction(|conn| {
        let id = msg.id;
        upsert_merchant(conn, keyring, msg)?;
        let record = Record::new(actor, AuditAction::DemoSeeded)
            .merchant(id)
            .detail(serde_json::json!({ "settings": "demo defaults", "signature_key": "set" }));
        audit::append(conn, &record, now_ms())?;
        Ok(())
    })
}

// ---- failed-login lockout (security issue 12, finding 3; engine::merchants owns the policy) ----

/// Which caller failed to log in: (merchant, login as sent, source key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginKey {
    pub merchant_id: i64,
    pub login: String,
    /// [`crate::engine::merchants::LoginSource::key`].
    pub source: String,
}

/// The lockout row of a [`LoginKey`], if it failed recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    pub failures: i32,
    pub last_failure_at: i64,
    pub locked_until: Option<i64>,
}

impl LoginFailures {
    pub fn is_locked(&self, now_ms: i64) -> bool {
        self.locked_until.is_some_and(|until| until > now_ms)
    }
}

/// Reads the lockout row of a key.
pub struct LoadLoginFailures {
    pub key: LoginKey,
}
vault_message!(LoadLoginFailures => Option<LoginFailures>, load_login_failures);

fn login_row(
    conn: &mut AnyConnection,
    key: &LoginKey,
) -> Result<Option<LoginFailures>, VaultError> {
    Ok(login_lockouts::table
        .find((key.merchant_id, &key.login, &key.source))
        .select((
            login_lockouts::failures,
            login_lockouts::last_failure_at,
            login_lockouts::locked_until,
        ))
        .first::<(i32, i64, Option<i64>)>(conn)
        .optional()?
        .map(|(failures, last_failure_at, locked_until)| LoginFailures {
            failures,
            last_failure_at,
            locked_until,
        }))
}

pub fn load_login_failures(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: LoadLoginFailures,
) -> Result<Option<LoginFailures>, VaultError> {
    login_row(conn, &msg.key)
}

/// Counts one failed login; locks the key when it reaches `max_failures`. Failures older than
/// one `lockout_ms` window (and an expired lock) are forgotten first. One transaction whose first
/// statement writes the row, so concurrent failures of one key (on any replica) serialize on it
/// and none is lost.
pub struct RecordLoginFailure {
    pub key: LoginKey,
    pub now_ms: i64,
    pub max_failures: i32,
    pub lockout_ms: i64,
}

/// What [`RecordLoginFailure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRecorded {
    pub failures: LoginFailures,
    /// This failure placed the lock (the lockout metric and warning count it once).
    pub newly_locked: bool,
}
vault_message!(RecordLoginFailure => FailureRecorded, record_login_failure);

pub fn record_login_failure(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: RecordLoginFailure,
) -> Result<FailureRecorded, VaultError> {
    let key = &msg.key;
    let now = msg.now_ms;
    conn.transaction(|conn| {
        let this = || {
            login_lockouts::merchant_id
                .eq(key.merchant_id)
                .and(login_lockouts::login.eq(&key.login))
                .and(login_lockouts::source.eq(&key.source))
        };
        // A stale streak starts over (no lock in force and the last failure a window ago).
        diesel::update(login_lockouts::table.filter(this()))
            .filter(login_lockouts::last_failure_at.lt(now - msg.lockout_ms))
            .filter(
                login_lockouts::locked_until
                    .is_null()
                    .or(login_lockouts::locked_until.le(now)),
            )
            .set((
                login_lockouts::failures.eq(0),
                login_lockouts::locked_until.eq(None::<i64>),
            ))
            .execute(conn)?;
        let increment = |conn: &mut AnyConnection| {
            diesel::update(login_lockouts::table.filter(this()))
                .set((
                    login_lockouts::failures.eq(login_lockouts::failures + 1),
                    login_lockouts::last_failure_at.eq(now),
                ))
                .execute(conn)
        };
        if increment(conn)? == 0 {
            let insert = diesel::insert_into(login_lockouts::table)
                .values((
                    login_lockouts::merchant_id.eq(key.merchant_id),
                    login_lockouts::login.eq(&key.login),
                    login_lockouts::source.eq(&key.source),
                    login_lockouts::failures.eq(1),
                    login_lockouts::last_failure_at.eq(now),
                    login_lockouts::locked_until.eq(None::<i64>),
                ))
                .on_conflict_do_nothing();
            let inserted = on_backend!(conn, |c| insert.execute(c))?;
            if inserted == 0 {
                increment(conn)?;
            }
        }
        let mut row = login_row(conn, key)?
            .ok_or_else(|| VaultError::Corrupt("login_lockouts row vanished".into()))?;
        let mut newly_locked = false;
        if row.failures >= msg.max_failures && !row.is_locked(now) {
            let until = now + msg.lockout_ms;
            diesel::update(login_lockouts::table.filter(this()))
                .set(login_lockouts::locked_until.eq(Some(until)))
                .execute(conn)?;
            row.locked_until = Some(until);
            newly_locked = true;
            // PCI DSS 10.2.1.4: the lockout is in the audit trail, in the same transaction.
            let record = Record::new(AuditActor::system(), AuditAction::LoginLockedOut)
                .merchant(key.merchant_id)
                .detail(serde_json::json!({
                    "login": key.login,
                    "source": key.source,
                    "failures": row.failures,
                    "locked_until": audit::format_ms(until),
                }));
            audit::append(conn, &record, now)?;
        }
        Ok(FailureRecorded {
            failures: row,
            newly_locked,
        })
    })
}

/// Forgets the failures of one key (a successful login).
pub struct ClearLoginFailures {
    pub key: LoginKey,
}
vault_message!(ClearLoginFailures => (), clear_login_failures);

pub fn clear_login_failures(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: ClearLoginFailures,
) -> Result<(), VaultError> {
    let key = &msg.key;
    diesel::delete(login_lockouts::table.find((key.merchant_id, &key.login, &key.source)))
        .execute(conn)?;
    Ok(())
}

/// Operator unlock (`oneclick admin merchant unlock`): deletes the lockout rows of a login, from
/// every source or from one. Returns how many rows were locked at `now_ms`.
pub struct UnlockLogin {
    pub merchant_id: i64,
    pub login: String,
    pub source: Option<String>,
    pub now_ms: i64,
}
vault_message!(UnlockLogin => usize, unlock_login);

pub fn unlock_login(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: UnlockLogin,
) -> Result<usize, VaultError> {
    conn.transaction(|conn| {
        let mut locked = login_lockouts::table
            .filter(login_lockouts::merchant_id.eq(msg.merchant_id))
            .filter(login_lockouts::login.eq(&msg.login))
            .filter(login_lockouts::locked_until.gt(msg.now_ms))
            .into_boxed();
        let mut delete = diesel::delete(login_lockouts::table)
            .filter(login_lockouts::merchant_id.eq(msg.merchant_id))
            .filter(login_lockouts::login.eq(&msg.login))
            .into_boxed();
        if let Some(source) = &msg.source {
            locked = locked.filter(login_lockouts::source.eq(source));
            delete = delete.filter(login_lockouts::source.eq(source));
        }
        let count: i64 = locked.count().get_result(conn)?;
        delete.execute(conn)?;
        Ok(usize::try_from(count).unwrap_or(0))
    })
}
