//! What the engine answers. These are domain-level replies; the NATS layer maps them onto wire
//! types (and the original's exact field names where docs/rules.md §4 demands them). No reply ever holds
//! a full PAN: cards appear masked (R9).

use serde::{Deserialize, Serialize};

use crate::domain::{CustomerStatus, OrderState, ResponseCode};
use crate::vault::records::CardRecord;

/// A card as shown to a customer or merchant (R9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedCard {
    /// `412362******0028`
    pub number: String,
    pub brand: String,
    /// `MM.YYYY`
    pub expire: String,
    pub holder: String,
}

impl MaskedCard {
    pub fn of(card: &CardRecord) -> MaskedCard {
        MaskedCard {
            number: card.masked(),
            brand: card.brand.as_str().to_string(),
            expire: card.expiry.display(),
            holder: card.holder.to_string(),
        }
    }
}

/// The result of a payment, registration, Token Pay or recurring charge. Stored with the order
/// (R16) and returned again, unchanged, for a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub merchant_id: i64,
    pub order_number: String,
    /// `purchase`, `registration`, `saved_card`, `token_pay`, `recurring_initial`, `recurring_charge`.
    pub kind: String,
    pub order_state: OrderState,
    pub response_code: ResponseCode,
    pub message: String,
    /// `10.34`
    pub amount: String,
    pub currency: String,
    pub card: Option<MaskedCard>,
    /// The saved card's token: the card used, or the card saved by this payment.
    pub token: Option<String>,
    /// True when this payment saved (or updated, R11) the card.
    pub card_saved: bool,
}

impl PaymentResult {
    pub fn is_approved(&self) -> bool {
        self.order_state == OrderState::Approved
    }
}

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
    pub kind: String,
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
