//! The authorization boundary: what the engine asks an acquirer ([`AuthRequest`]), what it hears
//! back ([`AuthOutcome`]), the [`Acquirer`] trait, and the deterministic [`Simulator`] that is the
//! default acquirer (docs/rules.md §5).
//!
//! Invariants kept:
//! - Authorization is infallible by signature: a transport failure, a late or garbled answer
//!   becomes [`AuthState::Timeout`] (the result is in doubt), never an `Err` the caller could
//!   mistake for a decline.
//! - Card data stays secret across the boundary: [`AuthPan`] and [`AuthCvc`] redact in `Debug`
//!   and zeroize on drop, so `{:?}` of an [`AuthRequest`] is safe to log.
//! - The simulator is a pure function of the request ([`Simulator::decide`]): the same request
//!   always gets the same outcome, approval code and network transaction id. It never looks at
//!   the clock (expiry dates are the engine's business; card `…0104` simulates an issuer's
//!   wrong-expiry answer).
//!
//! # Simulator rules
//!
//! The first matching rule wins; every authorization kind (purchase, verification with amount 0,
//! card on file, recurring, merchant-initiated) follows the same rules. "Last 4" means the last
//! four digits of the card number (the last of them is the Luhn check digit).
//!
//! | # | condition | state | code |
//! |---|-----------|-------|------|
//! | 1 | last 4 = `0998` | Timeout | `AS998` |
//! | 2 | amount in minor units ends in `13` (`10.13`) | Timeout | `AS998` |
//! | 3 | last 4 = `0002` | Declined | `AS102` insufficient funds |
//! | 4 | last 4 = `0100` | Declined | `AS100` declined |
//! | 5 | last 4 = `0101` | Declined | `AS101` wrong card data |
//! | 6 | last 4 = `0104` | Declined | `AS104` wrong expiry |
//! | 7 | last 4 = `0107` | Declined | `AS107` data error |
//! | 8 | last 4 = `0108` | Declined | `AS108` fraud suspicion |
//! | 9 | last 4 = `0109` | Declined | `AS109` processor limit exceeded |
//! | 10 | last 4 = `0110` | Declined | `AS110` 3-D Secure required |
//! | 11 | a CVC is sent and it is `000` | Declined | `AS101` wrong card data |
//! | 12 | amount in minor units ends in `51` (`10.51`) | Declined | `AS102` insufficient funds |
//! | 13 | anything else | Approved | `AS000` |
//!
//! A timeout carries `AS998` (system error): the acquirer did not answer, so the outcome is in
//! doubt and the engine must not treat it as a decline. Approvals carry a 6-digit approval code
//! derived from the order number and a network transaction id `SIM` + 12 digits derived from the
//! merchant and order number (SHA-256 based, stable across runs and builds). Declines and
//! timeouts carry neither.
//!
//! Ready-made test cards (all pass the Luhn check; any expiry and CVC other than `000`):
//!
//! | outcome | Visa | Mastercard | Mir | other |
//! |---------|------|------------|-----|-------|
//! | Approved `AS000` | `4111111111111111` | `5555555555554444` | `2200000000000004` | Amex `378282246310005` |
//! | Timeout `AS998` | `4000000000060998` | `5500000000080998` | `2200000000080998` | Amex `370000000060998` |
//! | `AS102` | `4000000000000002` | `5500000000020002` | `2200000000020002` | Amex `370000000000002` |
//! | `AS100` | `4000000000010100` | `5500000000030100` | `2200000000030100` | |
//! | `AS101` | `4000000000000101` | `5500000000020101` | `2200000000020101` | |
//! | `AS104` | `4000000000070104` | `5500000000090104` | `2200000000090104` | |
//! | `AS107` | `4000000000040107` | `5500000000060107` | `2200000000060107` | |
//! | `AS108` | `4000000000030108` | `5500000000050108` | `2200000000050108` | |
//! | `AS109` | `4000000000020109` | `5500000000040109` | `2200000000040109` | |
//! | `AS110` | `4000000000090110` | `5500000000010110` | `2200000000010110` | |
//!
//! The same tables, as markdown for the README, are [`SIMULATOR_RULES_MD`]; [`TEST_CARDS`] lists
//! the cards for tests and tools.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use self::AuthState::{Approved, Declined, Timeout};

/// Response code of an approval.
pub const CODE_APPROVED: &str = "AS000";
/// Response code the simulator gives with [`AuthState::Timeout`] (system error: no answer).
pub const CODE_TIMEOUT: &str = "AS998";

/// Why the card is being authorized; decides how the network treats the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    /// A one-off customer payment with full card data.
    Purchase,
    /// Card verification at registration; the amount may be 0.
    Verify,
    /// A customer-initiated payment with a saved card (Token Pay).
    CardOnFile,
    /// The first payment of a recurring agreement (stores the credential for later MITs).
    RecurringInitial,
    /// A merchant-initiated payment under an agreement, referencing the network transaction id
    /// of the initial payment when one is known.
    MerchantInitiated { network_tx_id: Option<String> },
}

/// A card number crossing the acquirer boundary. Zeroized on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct AuthPan(String);

impl AuthPan {
    pub fn new(digits: String) -> AuthPan {
        AuthPan(digits)
    }

    /// The digits, for the acquirer's wire message only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthPan([REDACTED])")
    }
}

/// A card security code crossing the acquirer boundary. Zeroized on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct AuthCvc(String);

impl AuthCvc {
    pub fn new(digits: String) -> AuthCvc {
        AuthCvc(digits)
    }

    /// The digits, for the acquirer's wire message only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthCvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthCvc([REDACTED])")
    }
}

/// One authorization request. `Debug` is safe to log (card data redacted).
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub merchant_id: i64,
    pub order_number: String,
    /// Amount in minor units (kopecks, cents); 0 for a verification.
    pub amount_minor: i64,
    /// ISO 4217 letters, e.g. `RUB`.
    pub currency: String,
    pub pan: AuthPan,
    pub expiry_month: u8,
    pub expiry_year: u16,
    /// Absent for merchant-initiated and most card-on-file payments.
    pub cvc: Option<AuthCvc>,
    pub kind: AuthKind,
}

/// The acquirer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthState {
    Approved,
    Declined,
    /// No answer in time: the outcome is in doubt (the card may or may not have been charged).
    Timeout,
}

/// What the acquirer answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthOutcome {
    pub state: AuthState,
    /// `AS000`, `AS100`, … (docs/rules.md §4).
    pub response_code: String,
    /// The network's id of this transaction; referenced by later merchant-initiated payments.
    pub network_tx_id: Option<String>,
    pub approval_code: Option<String>,
}

impl AuthOutcome {
    /// An approval with `AS000`.
    pub fn approved(network_tx_id: Option<String>, approval_code: Option<String>) -> AuthOutcome {
        AuthOutcome {
            state: AuthState::Approved,
            response_code: CODE_APPROVED.to_owned(),
            network_tx_id,
            approval_code,
        }
    }

    /// A decline with the given response code.
    pub fn declined(response_code: &str) -> AuthOutcome {
        AuthOutcome {
            state: AuthState::Declined,
            response_code: response_code.to_owned(),
            network_tx_id: None,
            approval_code: None,
        }
    }

    /// No answer in time ([`CODE_TIMEOUT`]); what every transport failure becomes.
    pub fn timeout() -> AuthOutcome {
        AuthOutcome {
            state: AuthState::Timeout,
            response_code: CODE_TIMEOUT.to_owned(),
            network_tx_id: None,
            approval_code: None,
        }
    }
}

/// Something that authorizes card payments. Infallible by design: implementations turn transport
/// failures into [`AuthState::Timeout`].
pub trait Acquirer: Send + Sync + 'static {
    fn authorize(&self, req: AuthRequest) -> BoxFuture<'static, AuthOutcome>;

    /// Short name for logs and metrics (`simulator`, `nats`).
    fn name(&self) -> &'static str;
}

/// The deterministic default acquirer; rules in the module header.
#[derive(Debug, Clone, Default)]
pub struct Simulator {
    /// Delay before every answer, to make load tests and timeouts realistic; zero answers at once.
    pub latency: Duration,
}

impl Simulator {
    pub fn new(latency: Duration) -> Simulator {
        Simulator { latency }
    }

    /// The outcome the simulator gives `req`, without latency.
    pub fn decide(req: &AuthRequest) -> AuthOutcome {
        let pan = req.pan.expose();
        let last4 = pan.get(pan.len().saturating_sub(4)..).unwrap_or("");
        let cents = req.amount_minor.rem_euclid(100);

        if last4 == "0998" || cents == 13 {
            return AuthOutcome::timeout();
        }
        let card_decline = match last4 {
            "0002" => Some("AS102"),
            "0100" => Some("AS100"),
            "0101" => Some("AS101"),
            "0104" => Some("AS104"),
            "0107" => Some("AS107"),
            "0108" => Some("AS108"),
            "0109" => Some("AS109"),
            "0110" => Some("AS110"),
            _ => None,
        };
        if let Some(code) = card_decline {
            return AuthOutcome::declined(code);
        }
        if req.cvc.as_ref().is_some_and(|cvc| cvc.expose() == "000") {
            return AuthOutcome::declined("AS101");
        }
        if cents == 51 {
            return AuthOutcome::declined("AS102");
        }
        AuthOutcome::approved(
            Some(network_tx_id(req.merchant_id, &req.order_number)),
            Some(approval_code(&req.order_number)),
        )
    }
}

impl Acquirer for Simulator {
    fn authorize(&self, req: AuthRequest) -> BoxFuture<'static, AuthOutcome> {
        // Decide now so the card data is dropped (and zeroized) before the future is parked.
        let outcome = Simulator::decide(&req);
        drop(req);
        let latency = self.latency;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            outcome
        })
    }

    fn name(&self) -> &'static str {
        "simulator"
    }
}

/// First 8 bytes of `SHA-256(domain ‖ input)` as a big-endian integer.
fn stable_hash(domain: &str, input: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(domain.as_bytes())
        .chain_update(input.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn approval_code(order_number: &str) -> String {
    format!(
        "{:06}",
        stable_hash("oneclick/sim/approval/", order_number) % 1_000_000
    )
}

fn network_tx_id(merchant_id: i64, order_number: &str) -> String {
    let key = format!("{merchant_id}:{order_number}");
    format!(
        "SIM{:012}",
        stable_hash("oneclick/sim/ntx/", &key) % 1_000_000_000_000
    )
}

/// A ready-made simulator test card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    pub pan: &'static str,
    pub brand: &'static str,
    pub state: AuthState,
    pub response_code: &'static str,
}

const fn card(
    pan: &'static str,
    brand: &'static str,
    state: AuthState,
    response_code: &'static str,
) -> TestCard {
    TestCard {
        pan,
        brand,
        state,
        response_code,
    }
}

/// Every test card of the module header, with the outcome the simulator gives it (with an amount
/// and CVC that trigger no other rule).
pub const TEST_CARDS: &[TestCard] = &[
    card("4111111111111111", "Visa", Approved, "AS000"),
    card("5555555555554444", "Mastercard", Approved, "AS000"),
    card("2200000000000004", "Mir", Approved, "AS000"),
    card("378282246310005", "Amex", Approved, "AS000"),
    card("4000000000060998", "Visa", Timeout, "AS998"),
    card("5500000000080998", "Mastercard", Timeout, "AS998"),
    card("2200000000080998", "Mir", Timeout, "AS998"),
    card("370000000060998", "Amex", Timeout, "AS998"),
    card("4000000000000002", "Visa", Declined, "AS102"),
    card("5500000000020002", "Mastercard", Declined, "AS102"),
    card("2200000000020002", "Mir", Declined, "AS102"),
    card("370000000000002", "Amex", Declined, "AS102"),
    card("4000000000010100", "Visa", Declined, "AS100"),
    card("5500000000030100", "Mastercard", Declined, "AS100"),
    card("2200000000030100", "Mir", Declined, "AS100"),
    card("4000000000000101", "Visa", Declined, "AS101"),
    card("5500000000020101", "Mastercard", Declined, "AS101"),
    card("2200000000020101", "Mir", Declined, "AS101"),
    card("4000000000070104", "Visa", Declined, "AS104"),
    card("5500000000090104", "Mastercard", Declined, "AS104"),
    card("2200000000090104", "Mir", Declined, "AS104"),
    card("4000000000040107", "Visa", Declined, "AS107"),
    card("5500000000060107", "Mastercard", Declined, "AS107"),
    card("2200000000060107", "Mir", Declined, "AS107"),
    card("4000000000030108", "Visa", Declined, "AS108"),
    card("5500000000050108", "Mastercard", Declined, "AS108"),
    card("2200000000050108", "Mir", Declined, "AS108"),
    card("4000000000020109", "Visa", Declined, "AS109"),
    card("5500000000040109", "Mastercard", Declined, "AS109"),
    card("2200000000040109", "Mir", Declined, "AS109"),
    card("4000000000090110", "Visa", Declined, "AS110"),
    card("5500000000010110", "Mastercard", Declined, "AS110"),
    card("2200000000010110", "Mir", Declined, "AS110"),
];

/// The simulator's rules and test cards as markdown, for the README.
pub const SIMULATOR_RULES_MD: &str = "\
### Simulator rules

The first matching rule wins; every kind of authorization (purchase, verification with amount 0,
card on file, recurring, merchant-initiated) follows the same rules. \"Last 4\" means the last four
digits of the card number.

| # | condition | state | response code |
|---|-----------|-------|---------------|
| 1 | last 4 = `0998` | Timeout | `AS998` |
| 2 | amount in minor units ends in `13` (e.g. `10.13`) | Timeout | `AS998` |
| 3 | last 4 = `0002` | Declined | `AS102` insufficient funds |
| 4 | last 4 = `0100` | Declined | `AS100` declined |
| 5 | last 4 = `0101` | Declined | `AS101` wrong card data |
| 6 | last 4 = `0104` | Declined | `AS104` wrong expiry |
| 7 | last 4 = `0107` | Declined | `AS107` data error |
| 8 | last 4 = `0108` | Declined | `AS108` fraud suspicion |
| 9 | last 4 = `0109` | Declined | `AS109` processor limit exceeded |
| 10 | last 4 = `0110` | Declined | `AS110` 3-D Secure required |
| 11 | a CVC is sent and it is `000` | Declined | `AS101` wrong card data |
| 12 | amount in minor units ends in `51` (e.g. `10.51`) | Declined | `AS102` insufficient funds |
| 13 | anything else | Approved | `AS000` |

A timeout means the acquirer did not answer: the outcome is in doubt, not a decline. Approvals
carry a 6-digit approval code derived from the order number and a network transaction id `SIM` +
12 digits derived from the merchant and order number, so the same request always gets the same
answer. Declines and timeouts carry neither.

### Test cards

All pass the Luhn check; use any expiry and any CVC other than `000`.

| outcome | Visa | Mastercard | Mir | other |
|---------|------|------------|-----|-------|
| Approved `AS000` | `4111111111111111` | `5555555555554444` | `2200000000000004` | Amex `378282246310005` |
| Timeout `AS998` | `4000000000060998` | `5500000000080998` | `2200000000080998` | Amex `370000000060998` |
| Declined `AS102` | `4000000000000002` | `5500000000020002` | `2200000000020002` | Amex `370000000000002` |
| Declined `AS100` | `4000000000010100` | `5500000000030100` | `2200000000030100` | |
| Declined `AS101` | `4000000000000101` | `5500000000020101` | `2200000000020101` | |
| Declined `AS104` | `4000000000070104` | `5500000000090104` | `2200000000090104` | |
| Declined `AS107` | `4000000000040107` | `5500000000060107` | `2200000000060107` | |
| Declined `AS108` | `4000000000030108` | `5500000000050108` | `2200000000050108` | |
| Declined `AS109` | `4000000000020109` | `5500000000040109` | `2200000000040109` | |
| Declined `AS110` | `4000000000090110` | `5500000000010110` | `2200000000010110` | |
";

#[cfg(test)]
mod tests;
