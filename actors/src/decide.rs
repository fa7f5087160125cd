//! Pure decisions over a customer's snapshot: what the payment page offers (R4, R6, R7, R18),
//! the merchant token list (§7), which payment to make ([`payment`]: the [`Plan`]), what a card
//! removal or a status change may do, the personal-account view and order status. No I/O, no
//! actors, no clock: the caller passes `today` (in the merchant's zone). The customer actor
//! (`crate::customer`) calls these between loading its snapshot and persisting; unit tests call
//! them directly, by rule name.

pub mod payment;

use std::sync::Arc;

use chrono::NaiveDate;

use crate::domain::{status, CardState, CustomerStatus, Token};
use crate::fault::Fault;
use crate::reply::*;
use crate::vault::customers::AccountEntry;
use crate::vault::records::{CardRecord, CustomerSnapshot, MerchantRecord, OrderRecord};

pub use payment::{
    new_card_payment, recurring_charge, registration, saved_card_payment, CardSource, Plan,
    SavedCardChannel, ValidCard, ValidOrder,
};

/// What a customer command leaves in its actor's cache (the actor applies it before replying).
#[derive(Debug)]
pub enum NextState {
    /// Keep what was there (after a load: the loaded snapshot).
    Keep,
    /// The customer as committed by this command's transaction.
    Replace(Option<Arc<CustomerSnapshot>>),
    /// Unknown: reload on the next message.
    Invalidate,
    /// Something is inconsistent: restart the actor (supervision, empty cache).
    Restart,
}

/// R6: the customer's status from its flags and cards.
pub fn status_of(snapshot: &CustomerSnapshot, today: NaiveDate) -> CustomerStatus {
    let usable = snapshot
        .cards
        .iter()
        .filter(|c| c.is_usable_on(today))
        .count();
    status::derive(snapshot.deny, snapshot.fraud, usable, snapshot.cards.len())
}

/// Cards not deleted, last used first (R7).
fn by_recency(snapshot: &CustomerSnapshot) -> Vec<&CardRecord> {
    let mut cards: Vec<&CardRecord> = snapshot
        .cards
        .iter()
        .filter(|c| c.state != CardState::Deleted)
        .collect();
    cards.sort_by(|a, b| b.recency().cmp(&a.recency()).then(b.id.cmp(&a.id)));
    cards
}

/// The customer's flags (R6); a customer not stored yet has none.
fn flags(snapshot: Option<&CustomerSnapshot>) -> (bool, bool) {
    snapshot.map_or((false, false), |s| (s.deny, s.fraud))
}

/// R4 (with R1, R6, R18): whether a new card of this customer is offered for saving on the
/// payment page, and so whether an approved payment or registration may save it. The one home of
/// the save-offer rule: the offer shows it, the new-card payment saves when it holds and the
/// customer did not decline, the registration saves when it holds.
pub fn save_offered(merchant: &MerchantRecord, snapshot: Option<&CustomerSnapshot>) -> bool {
    let (deny, fraud) = flags(snapshot);
    merchant.oneclick_enabled
        && merchant.mode.may_save_new_cards()
        && status::accepts_save_offers(deny, fraud)
}

/// R6: a payment of a customer flagged `fraud` is refused before anything is stored (the vault
/// checks the flag again under the customer's lock).
pub fn refuse_fraud(snapshot: Option<&CustomerSnapshot>) -> Result<(), Fault> {
    let (_, fraud) = flags(snapshot);
    if status::refuses_payments(fraud) {
        return Err(Fault::CustomerFraud);
    }
    Ok(())
}

/// R10 with R17: the customer whose card `token` is to be deleted. A customer not stored, or
/// (unless a command id may need replaying, R16) a token this customer does not have, is 4/1
/// whoever owns the token; the vault checks again in its transaction.
pub fn card_to_delete(
    snapshot: Option<&CustomerSnapshot>,
    token: &Token,
    replayable: bool,
) -> Result<i64, Fault> {
    let snapshot = snapshot.ok_or(Fault::TokenNotFound)?;
    if !replayable && !snapshot.cards.iter().any(|c| c.token == token.as_str()) {
        return Err(Fault::TokenNotFound);
    }
    Ok(snapshot.id)
}

/// R6: the reply to a status change, from the customer as committed.
pub fn status_changed(
    customer_number: &str,
    committed: &CustomerSnapshot,
    cards_deleted: bool,
    today: NaiveDate,
) -> StatusChanged {
    StatusChanged {
        customer_number: customer_number.to_string(),
        status: status_of(committed, today),
        cards_deleted,
    }
}

/// R18 with R6: whether this customer can pay with a saved card at this merchant at all.
pub fn saved_card_payments(merchant: &MerchantRecord, snapshot: Option<&CustomerSnapshot>) -> bool {
    let (_, fraud) = flags(snapshot);
    merchant.oneclick_enabled
        && merchant.mode.may_pay_with_saved_card()
        && !status::refuses_payments(fraud)
}

/// R4/R7/R18: the offer for the payment page.
pub fn offer(
    merchant: &MerchantRecord,
    snapshot: Option<&CustomerSnapshot>,
    today: NaiveDate,
) -> Offer {
    let status = match snapshot {
        Some(s) => status_of(s, today),
        None => CustomerStatus::New,
    };
    let saved_card_payments = saved_card_payments(merchant, snapshot);
    let cards = match snapshot {
        Some(s) if saved_card_payments => by_recency(s)
            .into_iter()
            .filter(|c| c.is_usable_on(today) && c.success_count >= merchant.list_threshold)
            .map(|c| OfferCard {
                token: c.token.clone(),
                card: MaskedCard::from(c),
            })
            .collect(),
        _ => Vec::new(),
    };
    Offer {
        status,
        save_offer: save_offered(merchant, snapshot),
        need_cvc: merchant.need_cvc,
        saved_card_payments,
        cards,
    }
}

/// The token list (docs/rules.md §4): every card not deleted, `active: false` when expired or blocked.
pub fn token_list(
    merchant: &MerchantRecord,
    snapshot: Option<&CustomerSnapshot>,
    today: NaiveDate,
) -> Vec<TokenListEntry> {
    let Some(snapshot) = snapshot else {
        return Vec::new();
    };
    by_recency(snapshot)
        .into_iter()
        .map(|c| TokenListEntry {
            token: c.token.clone(),
            post: c.last4.to_string(),
            bin: c.bin.parse().unwrap_or(0),
            brand: c.brand.as_str().to_string(),
            bank: String::new(),
            expire: c.expiry.display(),
            active: c.is_usable_on(today),
            need_cvc: merchant.need_cvc,
        })
        .collect()
}

/// The personal-account entry of one customer.
pub fn account_customer(entry: AccountEntry, today: NaiveDate) -> AccountCustomer {
    let live: Vec<&CardRecord> = entry
        .cards
        .iter()
        .filter(|c| c.state != CardState::Deleted)
        .collect();
    let usable = live.iter().filter(|c| c.is_usable_on(today)).count();
    let status = status::derive(entry.deny, entry.fraud, usable, live.len());
    let mut ranked: Vec<&CardRecord> = live.clone();
    ranked.sort_by(|a, b| b.recency().cmp(&a.recency()).then(b.id.cmp(&a.id)));
    let rank_of = |id: i64| ranked.iter().position(|c| c.id == id).map(|p| p as u32 + 1);
    let cards = entry
        .cards
        .iter()
        .map(|c| {
            let state = match c.state {
                CardState::Deleted => "deleted",
                _ if entry.fraud => "fraud",
                _ if !c.is_usable_on(today) => "expired",
                _ => "member",
            };
            AccountCard {
                token: c.token.clone(),
                brand: c.brand.as_str().to_string(),
                number: c.masked(),
                expire: c.expiry.display(),
                holder: c.holder.to_string(),
                state: state.to_string(),
                saved_at: iso_time(c.saved_at),
                last_success_at: c.last_used_at.map(iso_time),
                success_count: c.success_count,
                order: if c.state == CardState::Deleted {
                    None
                } else {
                    rank_of(c.id)
                },
            }
        })
        .collect();
    AccountCustomer {
        customer_number: entry.customer_number,
        status,
        created_at: iso_time(entry.created_at),
        cards,
    }
}

/// Order status from the stored order.
pub fn order_status(order: OrderRecord, card: Option<CardRecord>) -> OrderStatus {
    OrderStatus {
        merchant_id: order.merchant_id,
        kind: order.kind,
        order_state: order.state,
        response_code: order.response_code,
        amount: order.amount.to_string(),
        currency: order.currency,
        created_at: iso_time(order.created_at),
        updated_at: iso_time(order.updated_at),
        token: card.as_ref().map(|c| c.token.clone()),
        card: card.as_ref().map(MaskedCard::from),
        order_number: order.order_number,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::MerchantMode;
    use crate::vault::records::SignatureKey;

    /// A merchant with One Click on, CVC needed, no limits (also the payment decisions' tests').
    pub(super) fn merchant(mode: MerchantMode) -> MerchantRecord {
        MerchantRecord {
            id: 1,
            name: "shop".into(),
            union_id: 1,
            oneclick_enabled: true,
            mode,
            need_cvc: true,
            list_threshold: 1,
            time_zone: chrono_tz::Europe::Moscow,
            signature_key: SignatureKey::new(b"key".to_vec()),
            previous_signature_key: None,
            mit_cof: false,
            limits: HashMap::new(),
            users: HashMap::new(),
        }
    }

    fn customer(deny: bool, fraud: bool) -> CustomerSnapshot {
        CustomerSnapshot {
            id: 1,
            deny,
            fraud,
            version: 1,
            cards: Vec::new(),
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 6).expect("date")
    }

    #[test]
    fn r4_a_new_customer_of_a_standard_merchant_is_offered_saving() {
        let m = merchant(MerchantMode::Standard);
        assert!(save_offered(&m, None));
        assert!(save_offered(&m, Some(&customer(false, false))));
        assert!(offer(&m, None, today()).save_offer);
    }

    #[test]
    fn r6_deny_and_fraud_stop_save_offers_and_fraud_refuses_payments() {
        let m = merchant(MerchantMode::Standard);
        let denied = customer(true, false);
        let fraud = customer(false, true);
        assert!(!save_offered(&m, Some(&denied)));
        assert!(!save_offered(&m, Some(&fraud)));
        assert!(
            refuse_fraud(Some(&denied)).is_ok(),
            "deny: payments otherwise standard"
        );
        assert_eq!(refuse_fraud(Some(&fraud)), Err(Fault::CustomerFraud));
        assert!(saved_card_payments(&m, Some(&denied)));
        assert!(!saved_card_payments(&m, Some(&fraud)));
        let shown = offer(&m, Some(&fraud), today());
        assert!(!shown.save_offer && !shown.saved_card_payments);
        assert_eq!(shown.status, CustomerStatus::Fraud);
    }

    #[test]
    fn r18_modes_decide_saving_and_saved_card_payments() {
        let saved_only = merchant(MerchantMode::SavedCardsOnly);
        assert!(!save_offered(&saved_only, None));
        assert!(saved_card_payments(&saved_only, None));
        let save_only = merchant(MerchantMode::SaveOnly);
        assert!(save_offered(&save_only, None));
        assert!(!saved_card_payments(&save_only, None));
    }

    #[test]
    fn r1_a_merchant_not_enabled_offers_nothing() {
        let mut m = merchant(MerchantMode::Standard);
        m.oneclick_enabled = false;
        assert!(!save_offered(&m, None));
        assert!(!saved_card_payments(&m, None));
    }
}
