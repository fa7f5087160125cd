//! Row types: what the database stores, one struct per table shape we read or write. They are
//! separate from the domain types (`crate::domain`) and from the records the engine works with
//! ([`super::records`]); the conversions live next to those records.

use diesel::prelude::*;

use super::schema::{cards, customers, merchant_limits, merchants, orders, recurring_agreements};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = merchants)]
pub struct MerchantRow {
    pub id: i64,
    pub name: String,
    pub union_id: i64,
    pub oneclick_enabled: bool,
    pub mode: String,
    pub need_cvc: bool,
    pub list_threshold: i32,
    pub time_zone: String,
    pub signature_key: String,
    pub mit_cof: bool,
    pub updated_at: i64,
    /// The R2 key before the last rotation, verifying until `previous_signature_key_until`.
    /// `None` in a changeset leaves the column as it is.
    pub previous_signature_key: Option<String>,
    pub previous_signature_key_until: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = merchant_limits)]
pub struct LimitRow {
    pub merchant_id: i64,
    pub currency: String,
    pub day_limit: Option<i64>,
    pub week_limit: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = customers)]
pub struct CustomerRow {
    pub id: i64,
    pub union_id: i64,
    pub customer_number: String,
    pub deny: bool,
    pub fraud: bool,
    pub version: i64,
    pub created_at: i64,
}

/// A card without its ciphertext and fingerprint: everything that may be shown (masked).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cards)]
pub struct CardMetaRow {
    pub id: i64,
    pub token: String,
    pub customer_id: i64,
    pub state: String,
    pub brand: String,
    pub bin: String,
    pub last4: String,
    pub pan_length: i32,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub holder: String,
    pub saved_by_merchant: i64,
    pub saved_at: i64,
    pub last_used_at: Option<i64>,
    pub success_count: i64,
    pub deleted_at: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = cards)]
pub struct NewCardRow<'a> {
    pub token: &'a str,
    pub customer_id: i64,
    pub state: &'a str,
    pub brand: &'a str,
    pub bin: &'a str,
    pub last4: &'a str,
    pub pan_length: i32,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub holder: &'a str,
    pub pan_ciphertext: Option<&'a [u8]>,
    pub key_version: Option<i32>,
    pub fingerprint: Option<&'a [u8]>,
    pub saved_by_merchant: i64,
    pub saved_at: i64,
    pub last_used_at: Option<i64>,
    pub success_count: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: i64,
    pub merchant_id: i64,
    pub order_number: String,
    pub kind: String,
    pub customer_id: Option<i64>,
    pub card_id: Option<i64>,
    pub agreement_id: Option<i64>,
    pub amount: i64,
    pub currency: String,
    pub state: String,
    pub response_code: String,
    pub counts_for_limits: bool,
    pub request_digest: Vec<u8>,
    pub result_json: Option<String>,
    pub network_tx_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = recurring_agreements)]
pub struct AgreementRow {
    pub id: i64,
    pub merchant_id: i64,
    pub order_number: String,
    pub currency: String,
    pub min_amount: i64,
    pub max_amount: i64,
    pub period_days: i32,
    pub max_date: String,
    pub brand: String,
    pub bin: String,
    pub last4: String,
    pub pan_length: i32,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub holder: String,
    pub pan_ciphertext: Vec<u8>,
    pub key_version: i32,
    pub network_tx_id: Option<String>,
    pub last_charge_on: Option<String>,
    pub charges: i64,
    pub created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = recurring_agreements)]
pub struct NewAgreementRow<'a> {
    pub merchant_id: i64,
    pub order_number: &'a str,
    pub currency: &'a str,
    pub min_amount: i64,
    pub max_amount: i64,
    pub period_days: i32,
    pub max_date: &'a str,
    pub brand: &'a str,
    pub bin: &'a str,
    pub last4: &'a str,
    pub pan_length: i32,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub holder: &'a str,
    pub pan_ciphertext: &'a [u8],
    pub key_version: i32,
    pub network_tx_id: Option<&'a str>,
    pub last_charge_on: Option<&'a str>,
    pub charges: i64,
    pub created_at: i64,
}
