//! The result of an order as oneclick answers it and stores it with the order (R16): a repeat of
//! the order gets these bytes back unchanged, so the serialized form is a stored contract.
//!
//! Invariants: no field ever holds a full PAN (R9: `MaskedCard` only); `kind`, `order_state` and
//! `response_code` are closed sets with their spelling defined once in this module's siblings.

use serde::{Deserialize, Serialize};

use super::{OrderKind, OrderState, ResponseCode};

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

/// The result of a payment, registration, Token Pay or recurring charge. Stored with the order
/// (R16) and returned again, unchanged, for a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub merchant_id: i64,
    pub order_number: String,
    pub kind: OrderKind,
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
