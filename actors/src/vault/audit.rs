//! The audit trail (PCI DSS 10.2): who changed what, when. One row of `audit_log` per admin-CLI
//! or merchant-settings change, customer status change, card deletion, key operation and login
//! lockout.
//!
//! Invariants kept here:
//! - append-only: this module only inserts and reads; the database itself refuses `UPDATE` and
//!   `DELETE` on the table (triggers of migration `2026-12-06-000002_audit`, both backends);
//! - a change made in a vault transaction writes its row with [`append`] inside that same
//!   transaction (one extra `INSERT`), so there is no change without its record and no record of
//!   a change rolled back; a replayed idempotent command (R16) writes nothing;
//! - never card data: a row holds an actor, a closed [`AuditAction`], the merchant, a customer
//!   number and a card token where relevant (a token is a random UUID, not card data), and a JSON
//!   detail built by the code from settings and counts — never a PAN, CVC, ciphertext, key or
//!   password (secrets appear as `"set"`);
//! - each spelling (`actor` prefixes, `action` names) is defined once, here.
//!
//! For callers outside a vault transaction (the login lockout, the admin CLI's file-only key
//! operations) [`AppendAudit`] / [`append_audit`] writes one row in a transaction of its own.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::audit_log;
use super::{vault_message, AnyConnection, VaultError};
use crate::crypto::Keyring;

/// Declares the closed set of actions with their stored spelling, once.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $spelling:literal,)+) => {
        /// What happened. Stored as its [`AuditAction::as_str`] spelling.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)+
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $spelling,)+
                }
            }

            /// The action of a stored spelling.
            pub fn parse(spelling: &str) -> Option<AuditAction> {
                match spelling {
                    $($spelling => Some(AuditAction::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

audit_actions! {
    /// `admin merchant` created a merchant.
    MerchantCreated => "merchant.created",
    /// `admin merchant` changed named settings of a merchant.
    MerchantUpdated => "merchant.updated",
    /// `admin merchant rotate-signing-key`: a new R2 key, the old one verifying for an overlap.
    SigningKeyRotated => "merchant.signing_key_rotated",
    /// `admin user`: a web-service user's password was set.
    MerchantUserSet => "merchant.user_set",
    /// `admin union create`.
    UnionCreated => "union.created",
    /// `admin union join`: a merchant and its customers moved into a union.
    UnionJoined => "union.joined",
    /// `admin demo-seed`: the demo merchant was created or reset.
    DemoSeeded => "merchant.demo_seeded",
    /// A customer's flags were set or cleared (R6): deny, fraud, active, leave.
    CustomerStatusChanged => "customer.status_changed",
    /// A card was deleted (R10) by the payment page, the merchant or a durable command.
    CardDeleted => "card.deleted",
    /// A key file was written (`admin keys generate`).
    KeyGenerated => "key.generated",
    /// A master key was added and made current (`admin keys add`).
    KeyAdded => "key.added",
    /// Cards were re-encrypted to the current key (`admin keys rotate`).
    KeysRotated => "key.rotated",
    /// Key material was wrapped or re-sealed (reserved for the key-wrapping commands).
    KeyResealed => "key.resealed",
    /// A web-service login was locked after repeated failures (reserved for the lockout).
    LoginLockedOut => "login.locked_out",
    /// A locked login was unlocked (reserved for `admin unlock`).
    LoginUnlocked => "login.unlocked",
    /// `admin account-user`: a personal-account user's password was set (issue 15).
    AccountUserSet => "account.user_set",
    /// `admin account-user --totp`: a personal-account user was enrolled in the TOTP second
    /// factor (a new secret, sealed; the detail says whether it replaced one).
    AccountTotpEnrolled => "account.totp_enrolled",
    /// `admin account-user --no-totp`: a personal-account user's second factor was removed.
    AccountTotpRemoved => "account.totp_removed",
    /// `admin merchant nats-identity create`: a merchant's NATS user was created or its password
    /// replaced in the generated users file (issue 16).
    NatsIdentitySet => "merchant.nats_identity_set",
    /// `admin merchant nats-identity revoke`: a merchant's NATS user was removed.
    NatsIdentityRevoked => "merchant.nats_identity_revoked",
}

/// Who did it. Spellings: `admin-cli:<os user>`, `merchant:<id>:<login>`, `account:<id>:<login>`,
/// `gateway`, `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditActor(String);

impl AuditActor {
    /// An operator running `oneclick admin …` as OS user `os_user`.
    pub fn admin_cli(os_user: &str) -> AuditActor {
        AuditActor(format!("admin-cli:{}", sanitize(os_user)))
    }
    /// A merchant's web-service user (authenticated before anything is changed).
    pub fn merchant(merchant_id: i64, login: &str) -> AuditActor {
        AuditActor(format!("merchant:{merchant_id}:{}", sanitize(login)))
    }
    /// A personal-account user signed in to the merchant's web pages (issue 15).
    pub fn account(merchant_id: i64, login: &str) -> AuditActor {
        AuditActor(format!("account:{merchant_id}:{}", sanitize(login)))
    }
    /// A payment gateway (the payment page, or a durable command it published).
    pub fn gateway() -> AuditActor {
        AuditActor("gateway".into())
    }
    /// The service itself (e.g. an automatic lockout).
    pub fn system() -> AuditActor {
        AuditActor("system".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AuditActor {
    fn default() -> Self {
        AuditActor::system()
    }
}

/// Logins and OS user names are free text: keep them printable and short in the trail.
fn sanitize(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// One audit record to append.
#[derive(Debug, Clone)]
pub struct Record {
    pub actor: AuditActor,
    pub action: AuditAction,
    pub merchant_id: Option<i64>,
    pub customer_number: Option<String>,
    pub token: Option<String>,
    /// A JSON object built by the caller from settings and counts; never card data or secrets.
    pub detail: serde_json::Value,
}

impl Record {
    pub fn new(actor: AuditActor, action: AuditAction) -> Record {
        Record {
            actor,
            action,
            merchant_id: None,
            customer_number: None,
            token: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
    pub fn merchant(mut self, merchant_id: i64) -> Record {
        self.merchant_id = Some(merchant_id);
        self
    }
    pub fn customer(mut self, customer_number: &str) -> Record {
        self.customer_number = Some(customer_number.to_string());
        self
    }
    pub fn token(mut self, token: &str) -> Record {
        self.token = Some(token.to_string());
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Record {
        self.detail = detail;
        self
    }
}

/// Appends `record` at `at_ms` in the caller's transaction (one `INSERT`).
pub fn append(conn: &mut AnyConnection, record: &Record, at_ms: i64) -> Result<(), VaultError> {
    let detail = serde_json::to_string(&record.detail)
        .map_err(|e| VaultError::Corrupt(format!("audit detail: {e}")))?;
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at_ms.eq(at_ms),
            audit_log::actor.eq(record.actor.as_str()),
            audit_log::action.eq(record.action.as_str()),
            audit_log::merchant_id.eq(record.merchant_id),
            audit_log::customer_number.eq(record.customer_number.as_deref()),
            audit_log::token.eq(record.token.as_deref()),
            audit_log::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// Appends one record in a transaction of its own (for changes made outside the vault, e.g. the
/// login lockout or a key file written by the admin CLI).
pub struct AppendAudit(pub Record);
vault_message!(AppendAudit => (), append_audit);

pub fn append_audit(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: AppendAudit,
) -> Result<(), VaultError> {
    let at = super::now_ms();
    conn.transaction(|conn| append(conn, &msg.0, at))
}

/// Reads the trail: the newest `limit` rows matching, returned oldest first.
#[derive(Debug, Clone)]
pub struct ListAudit {
    pub merchant_id: Option<i64>,
    /// Only rows at or after this time (ms since the epoch, UTC).
    pub since_ms: Option<i64>,
    pub limit: i64,
}

/// One row of the trail as printed by `oneclick admin audit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub detail: serde_json::Value,
}

type AuditTuple = (
    i64,
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
);

vault_message!(ListAudit => Vec<AuditEntry>, list_audit);

pub fn list_audit(
    conn: &mut AnyConnection,
    _: &Keyring,
    msg: ListAudit,
) -> Result<Vec<AuditEntry>, VaultError> {
    let mut query = audit_log::table
        .select((
            audit_log::id,
            audit_log::at_ms,
            audit_log::actor,
            audit_log::action,
            audit_log::merchant_id,
            audit_log::customer_number,
            audit_log::token,
            audit_log::detail,
        ))
        .order(audit_log::id.desc())
        .limit(msg.limit.clamp(1, 100_000))
        .into_boxed();
    if let Some(m) = msg.merchant_id {
        query = query.filter(audit_log::merchant_id.eq(m));
    }
    if let Some(since) = msg.since_ms {
        query = query.filter(audit_log::at_ms.ge(since));
    }
    let rows: Vec<AuditTuple> = query.load(conn)?;
    let mut entries = rows
        .into_iter()
        .map(
            |(id, at_ms, actor, action, merchant_id, customer_number, token, detail)| {
                Ok(AuditEntry {
                    id,
                    at: format_ms(at_ms),
                    actor,
                    action,
                    merchant_id,
                    customer_number,
                    token,
                    detail: serde_json::from_str(&detail)
                        .map_err(|_| VaultError::Corrupt(format!("audit row {id}: detail")))?,
                })
            },
        )
        .collect::<Result<Vec<_>, VaultError>>()?;
    entries.reverse();
    Ok(entries)
}

/// RFC 3339 (UTC, milliseconds) of a stored time.
pub fn format_ms(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| at_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_spelling_parses_back_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
            assert!(seen.insert(a.as_str()), "{} twice", a.as_str());
        }
        assert_eq!(AuditAction::parse("card.eaten"), None);
    }

    #[test]
    fn actors_are_spelled_as_documented() {
        assert_eq!(AuditActor::admin_cli("ops").as_str(), "admin-cli:ops");
        assert_eq!(
            AuditActor::merchant(452739, "shop\napi").as_str(),
            "merchant:452739:shopapi"
        );
        assert_eq!(AuditActor::gateway().as_str(), "gateway");
        assert_eq!(AuditActor::system().as_str(), "system");
    }

    #[test]
    fn stored_times_print_as_utc_rfc3339() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
