//! What the engine answers. These are domain-level replies; the NATS layer maps them onto wire
//! types (and the original's exact field names where docs/rules.md §4 demands them). No reply ever holds
//! a full PAN: cards appear masked (R9).

use serde::{Deserialize, Serialize};

use crate::domain::{CustomerStatus, OrderKind, OrderState, ResponseCode};
pub use crate::domain::{MaskedCard, PaymentResult};

/// A listable card on the payment page (R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferCard {
    pub token: String,
    #[serde(flatten)]
    pub card: MaskedCard,
}

/// What the payment page should show this customer (R4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub status: CustomerStatus,
    /// Offer to save a new card ("yes" preselected on the page).
    pub save_offer: bool,
    /// Whether paying with a saved card needs the CVC2 (R8).
    pub need_cvc: bool,
    /// Whether paying with a saved card is possible at all (R18, R6 fraud).
    pub saved_card_payments: bool,
    /// Last used first.
    pub cards: Vec<OfferCard>,
}

/// One entry of the merchant token list, with the original's fields (docs/rules.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenListEntry {
    pub token: String,
    pub post: String,
    pub bin: u32,
    pub brand: String,
    pub bank: String,
    pub expire: String,
    pub active: bool,
    pub need_cvc: bool,
}

/// A card in the personal-account view (docs/rules.md §4 columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCard {
    pub token: String,
    pub brand: String,
    pub number: String,
    pub expire: String,
    pub holder: String,
    /// `member`, `fraud`, `expired`, `deleted`.
    pub state: String,
    pub saved_at: String,
    pub last_success_at: Option<String>,
    pub success_count: i64,
    /// Recency rank among the customer's cards not deleted (1 = last used); none when deleted.
    pub order: Option<u32>,
}

/// A customer in the personal-account view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCustomer {
    pub customer_number: String,
    pub status: CustomerStatus,
    pub created_at: String,
    pub cards: Vec<AccountCard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerPage {
    pub total: i64,
    pub customers: Vec<AccountCustomer>,
}

/// The state of one order, for the merchant's order-state service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatus {
    pub merchant_id: i64,
    pub order_number: String,
    pub kind: OrderKind,
    pub order_state: OrderState,
    pub response_code: ResponseCode,
    pub amount: String,
    pub currency: String,
    pub created_at: String,
    pub updated_at: String,
    pub card: Option<MaskedCard>,
    pub token: Option<String>,
}

/// The reply to a status change (R6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    pub customer_number: String,
    pub status: CustomerStatus,
    pub cards_deleted: bool,
}

/// `{"message":"Token … is removed"}` (docs/rules.md §4, byte-exact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRemoved {
    pub message: String,
}

impl TokenRemoved {
    pub fn of(token: &str) -> TokenRemoved {
        TokenRemoved {
            message: format!("Token {token} is removed"),
        }
    }
}

/// RFC 3339 UTC from epoch milliseconds.
pub fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
