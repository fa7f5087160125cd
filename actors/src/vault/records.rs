//! Records: what the vault hands to the engine, built from rows with explicit, checked
//! conversions (a row that does not convert is [`VaultError::Corrupt`], never a panic).
//! Records carry masked card data only; a decrypted PAN travels separately as a `Pan`.

use std::collections::HashMap;

use chrono::NaiveDate;
use compact_str::CompactString;
use serde::Serialize;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::rows::{CardMetaRow, CustomerRow, MerchantRow, OrderRow};
use super::VaultError;
use crate::domain::{
    Amount, CardBrand, CardState, Expiry, Limits, MaskedCard, MerchantMode, OrderKind, OrderState,
    ResponseCode,
};

/// HMAC key of a merchant's order signatures (R2). Redacted, zeroized.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SignatureKey(Vec<u8>);

impl SignatureKey {
    pub fn new(bytes: Vec<u8>) -> SignatureKey {
        SignatureKey(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SignatureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureKey([REDACTED])")
    }
}

/// A merchant and its One Click settings.
#[derive(Debug, Clone)]
pub struct MerchantRecord {
    pub id: i64,
    pub name: String,
    pub union_id: i64,
    pub oneclick_enabled: bool,
    pub mode: MerchantMode,
    pub need_cvc: bool,
    pub list_threshold: i64,
    pub time_zone: chrono_tz::Tz,
    pub signature_key: SignatureKey,
    /// The key before the last rotation and until when (ms since the epoch, UTC) it still
    /// verifies order signatures (`admin merchant rotate-signing-key --overlap`).
    pub previous_signature_key: Option<(SignatureKey, i64)>,
    pub mit_cof: bool,
    /// Per currency code (R12).
    pub limits: HashMap<String, Limits>,
    /// login → argon2 PHC hash.
    pub users: HashMap<String, String>,
}

impl MerchantRecord {
    pub(crate) fn from_rows(
        row: MerchantRow,
        limits: HashMap<String, Limits>,
        users: HashMap<String, String>,
    ) -> Result<MerchantRecord, VaultError> {
        use base64::Engine as _;
        let corrupt = |what: &str| VaultError::Corrupt(format!("merchant {}: {what}", row.id));
        Ok(MerchantRecord {
            id: row.id,
            mode: MerchantMode::parse(&row.mode).map_err(|_| corrupt("mode"))?,
            time_zone: row.time_zone.parse().map_err(|_| corrupt("time_zone"))?,
            signature_key: SignatureKey::new(
                base64::engine::general_purpose::STANDARD
                    .decode(&row.signature_key)
                    .map_err(|_| corrupt("signature_key"))?,
            ),
            previous_signature_key: match (
                row.previous_signature_key,
                row.previous_signature_key_until,
            ) {
                (Some(key), Some(until)) => Some((
                    SignatureKey::new(
                        base64::engine::general_purpose::STANDARD
                            .decode(&key)
                            .map_err(|_| corrupt("previous_signature_key"))?,
                    ),
                    until,
                )),
                _ => None,
            },
            name: row.name,
            union_id: row.union_id,
            oneclick_enabled: row.oneclick_enabled,
            need_cvc: row.need_cvc,
            list_threshold: i64::from(row.list_threshold),
            mit_cof: row.mit_cof,
            limits,
            users,
        })
    }

    /// The previous R2 key if it still verifies at `now_ms` (inside its rotation overlap).
    pub fn previous_signature_key_at(&self, now_ms: i64) -> Option<&[u8]> {
        self.previous_signature_key
            .as_ref()
            .filter(|(_, until)| now_ms < *until)
            .map(|(key, _)| key.expose())
    }

    /// The limits that apply to a payment in `currency` (none configured → unlimited).
    pub fn limits_for(&self, currency: &str) -> Limits {
        self.limits.get(currency).cloned().unwrap_or_default()
    }

    /// Today in the merchant's time zone: the day card expiry, the offer and the agreements'
    /// dates are judged on (R7, R15).
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now()
            .with_timezone(&self.time_zone)
            .date_naive()
    }
}

/// A saved card as shown (R9): masked number, brand, expiry, holder.
impl From<&CardRecord> for MaskedCard {
    fn from(card: &CardRecord) -> MaskedCard {
        MaskedCard {
            number: card.masked(),
            brand: card.brand.as_str().to_string(),
            expire: card.expiry.display(),
            holder: card.holder.to_string(),
        }
    }
}

/// A saved card as the engine sees it: masked, with its usage counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardRecord {
    pub id: i64,
    pub token: String,
    pub customer_id: i64,
    pub state: CardState,
    pub brand: CardBrand,
    /// Short strings kept inline (no allocation each): one record per cached card.
    pub bin: CompactString,
    pub last4: CompactString,
    pub pan_length: usize,
    pub expiry: Expiry,
    pub holder: CompactString,
    pub saved_by_merchant: i64,
    pub saved_at: i64,
    pub last_used_at: Option<i64>,
    pub success_count: i64,
    pub deleted_at: Option<i64>,
}

impl CardRecord {
    /// `412362******0028` (R9).
    pub fn masked(&self) -> String {
        let stars = self.pan_length.saturating_sub(10);
        format!("{}{}{}", self.bin, "*".repeat(stars), self.last4)
    }

    /// Usable for a payment today: active (not blocked or deleted) and not expired.
    pub fn is_usable_on(&self, today: NaiveDate) -> bool {
        self.state == CardState::Active && !self.expiry.is_expired_on(today)
    }

    /// Recency key: last successful use, else saving time (R7: last used first).
    pub fn recency(&self) -> i64 {
        self.last_used_at.unwrap_or(self.saved_at)
    }
}

impl TryFrom<CardMetaRow> for CardRecord {
    type Error = VaultError;

    fn try_from(row: CardMetaRow) -> Result<CardRecord, VaultError> {
        let corrupt = |what: &str| VaultError::Corrupt(format!("card {}: {what}", row.id));
        let expiry = Expiry::from_parts(
            u32::try_from(row.expiry_month).map_err(|_| corrupt("expiry"))?,
            u32::try_from(row.expiry_year).map_err(|_| corrupt("expiry"))?,
        )
        .map_err(|_| corrupt("expiry"))?;
        Ok(CardRecord {
            id: row.id,
            state: CardState::parse(&row.state).map_err(|_| corrupt("state"))?,
            brand: CardBrand::from_db(&row.brand).map_err(|_| corrupt("brand"))?,
            pan_length: usize::try_from(row.pan_length).map_err(|_| corrupt("pan_length"))?,
            expiry,
            token: row.token,
            customer_id: row.customer_id,
            bin: row.bin.into(),
            last4: row.last4.into(),
            holder: row.holder.into(),
            saved_by_merchant: row.saved_by_merchant,
            saved_at: row.saved_at,
            last_used_at: row.last_used_at,
            success_count: row.success_count,
            deleted_at: row.deleted_at,
        })
    }
}

/// Everything a customer actor caches: the customer's flags and its cards not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSnapshot {
    pub id: i64,
    pub deny: bool,
    pub fraud: bool,
    pub version: i64,
    pub cards: Vec<CardRecord>,
}

impl CustomerSnapshot {
    pub(crate) fn from_rows(row: CustomerRow, cards: Vec<CardMetaRow>) -> Result<Self, VaultError> {
        Ok(CustomerSnapshot {
            id: row.id,
            deny: row.deny,
            fraud: row.fraud,
            version: row.version,
            cards: cards
                .into_iter()
                .map(CardRecord::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// An order as the engine sees it (the merchant's order-state service): its closed sets typed,
/// its amount an [`Amount`]. A row that does not convert is [`VaultError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: i64,
    pub merchant_id: i64,
    pub order_number: String,
    pub kind: OrderKind,
    pub amount: Amount,
    pub currency: String,
    pub state: OrderState,
    pub response_code: ResponseCode,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<OrderRow> for OrderRecord {
    type Error = VaultError;

    fn try_from(row: OrderRow) -> Result<OrderRecord, VaultError> {
        let corrupt = |what: &str| VaultError::Corrupt(format!("order {}: {what}", row.id));
        Ok(OrderRecord {
            id: row.id,
            merchant_id: row.merchant_id,
            kind: OrderKind::parse(&row.kind).map_err(|_| corrupt("kind"))?,
            amount: Amount::from_minor(row.amount).ok_or_else(|| corrupt("amount"))?,
            state: OrderState::parse(&row.state).map_err(|_| corrupt("state"))?,
            response_code: ResponseCode::parse(&row.response_code)
                .map_err(|_| corrupt("response code"))?,
            order_number: row.order_number,
            currency: row.currency,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// An order reserved and not completed (still `In Process`), as a repeat finds it: what the
/// engine needs to tell "still at the acquirer" from "left in doubt by a dead process".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOrder {
    pub id: i64,
    pub merchant_id: i64,
    pub customer_id: Option<i64>,
    pub updated_at: i64,
}
