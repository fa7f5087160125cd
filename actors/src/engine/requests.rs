//! What the engine is asked to do: one struct per command, holding the fields *as received*
//! (strings where the original takes strings), because R1 and R2 need the raw values: the
//! signature is computed over the customer number before prohibited characters are stripped.
//! The engine validates every field into domain types before anything is stored.
//!
//! Secrets (`number`, `cvc`, `password`) are wrapped so they redact in `Debug` and zeroize.

use crate::domain::{recurring, DomainError, RecurringParams};

pub use crate::secret::SecretString;
pub use crate::vault::audit::AuditActor;

/// The order part shared by every payment command.
#[derive(Debug, Clone, Default)]
pub struct OrderInput {
    pub merchant_id: i64,
    pub order_number: String,
    /// `10.34`
    pub amount: String,
    pub currency: String,
    /// Present for One Click payments (R1); absent for plain and recurring ones.
    pub customer_number: Option<String>,
    /// Base64 HMAC-SHA256 (R2), required with `customer_number`.
    pub signature: Option<String>,
}

/// A new card typed on the payment page.
#[derive(Debug, Clone, Default)]
pub struct NewCardInput {
    pub number: SecretString,
    pub expiry_month: String,
    pub expiry_year: String,
    pub holder: String,
    pub cvc: Option<SecretString>,
}

/// Recurring parameters as received (R3, R15); all absent for a normal payment.
#[derive(Debug, Clone, Default)]
pub struct RecurringInput {
    pub indicator: Option<String>,
    pub min_amount: Option<String>,
    pub max_amount: Option<String>,
    pub period_days: Option<String>,
    pub max_date: Option<String>,
}

impl RecurringInput {
    /// R3: whether any recurring field is present (an empty string is absent).
    pub fn any_present(&self) -> bool {
        recurring::any_field_present(
            self.indicator.as_deref(),
            self.min_amount.as_deref(),
            self.max_amount.as_deref(),
            self.period_days.as_deref(),
            self.max_date.as_deref(),
        )
    }

    /// R15: the agreement these fields ask for (`None`: not a recurring order).
    pub fn parse(&self) -> Result<Option<RecurringParams>, DomainError> {
        RecurringParams::parse(
            self.indicator.as_deref(),
            self.min_amount.as_deref(),
            self.max_amount.as_deref(),
            self.period_days.as_deref(),
            self.max_date.as_deref(),
        )
    }
}

/// R4: what to offer on the payment page (read-only).
#[derive(Debug, Clone, Default)]
pub struct OfferRequest {
    pub order: OrderInput,
}

/// Pay with a new card (financial transaction, R13), optionally saving it (R4: absent = yes),
/// or the initial payment of a recurring agreement (R15, no customer number).
#[derive(Debug, Clone, Default)]
pub struct PayNewCardRequest {
    pub order: OrderInput,
    pub card: NewCardInput,
    pub save: Option<bool>,
    pub recurring: RecurringInput,
}

/// Registration transaction (R13): verify the card, no payment; saves it on success.
#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    pub order: OrderInput,
    pub card: NewCardInput,
}

/// Pay with a saved card on the payment page (R8: CVC when the merchant needs it).
#[derive(Debug, Clone, Default)]
pub struct PaySavedCardRequest {
    pub order: OrderInput,
    pub token: String,
    pub cvc: Option<SecretString>,
}

/// Token Pay (R14): the merchant's own UI pays with a saved card, no CVC.
#[derive(Debug, Clone, Default)]
pub struct TokenPayRequest {
    pub order: OrderInput,
    /// Must be `5`.
    pub token_type: i64,
    pub token: String,
}

/// A merchant-initiated charge against a recurring agreement (R15).
#[derive(Debug, Clone, Default)]
pub struct RecurringChargeRequest {
    pub merchant_id: i64,
    /// The initial order that created the agreement.
    pub initial_order_number: String,
    pub order_number: String,
    pub amount: String,
    pub currency: String,
}

/// Who deletes a card: the customer on the payment page (signed like an order) or the merchant
/// via token removal (authenticated web-service user).
#[derive(Debug, Clone, Default)]
pub struct DeleteCardRequest {
    pub merchant_id: i64,
    pub customer_number: String,
    pub token: String,
    /// R16: repeats with the same id return the first result.
    pub command_id: Option<String>,
    /// Who asks, for the audit trail (`gateway`, or `merchant:<id>:<login>`).
    pub actor: AuditActor,
}

/// Merchant sets or clears a customer's flags (R6).
#[derive(Debug, Clone, Default)]
pub struct SetStatusRequest {
    pub merchant_id: i64,
    pub customer_number: String,
    /// `deny`, `fraud`, `active` (clears both), `leave` (deny + delete every card),
    /// `clear_deny`, `clear_fraud`.
    pub status: String,
    pub command_id: Option<String>,
    /// Who asks, for the audit trail.
    pub actor: AuditActor,
}

/// Merchant token list (docs/rules.md §4).
#[derive(Debug, Clone, Default)]
pub struct TokenListRequest {
    pub merchant_id: i64,
    pub customer_number: String,
}

/// Personal-account view: customers of the merchant's union with their cards.
#[derive(Debug, Clone, Default)]
pub struct ListCustomersRequest {
    pub merchant_id: i64,
    pub search: Option<String>,
    pub offset: i64,
    pub limit: i64,
    /// Keyset pagination: customers whose number sorts after this one (the personal account).
    pub after: Option<String>,
}

/// Order state by order number.
#[derive(Debug, Clone, Default)]
pub struct OrderStateRequest {
    pub merchant_id: i64,
    pub order_number: String,
}

/// Web-service credentials (docs/rules.md §4: login ≤ 20, password ≤ 30).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub merchant_id: i64,
    pub login: String,
    pub password: SecretString,
}
