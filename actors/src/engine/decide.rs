//! Pure decisions over a customer's snapshot: what the payment page offers (R4, R6, R7, R18),
//! the merchant token list (§7), the personal-account view and order status. No I/O: unit tests
//! call these directly.

use chrono::NaiveDate;

use super::replies::*;
use super::{EngineError, EngineResult};
use crate::domain::{status, CardState, CustomerStatus, OrderState, ResponseCode};
use crate::vault::customers::AccountEntry;
use crate::vault::records::{CardRecord, CustomerSnapshot, MerchantRecord};
use crate::vault::rows::OrderRow;
use crate::vault::VaultError;

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

/// R4/R7/R18: the offer for the payment page.
pub fn offer(
    merchant: &MerchantRecord,
    snapshot: Option<&CustomerSnapshot>,
    today: NaiveDate,
) -> Offer {
    let (status, deny, fraud) = match snapshot {
        Some(s) => (status_of(s, today), s.deny, s.fraud),
        None => (CustomerStatus::New, false, false),
    };
    let enabled = merchant.oneclick_enabled;
    let saved_card_payments = enabled && merchant.mode.may_pay_with_saved_card() && !fraud;
    let cards = match snapshot {
        Some(s) if saved_card_payments => by_recency(s)
            .into_iter()
            .filter(|c| c.is_usable_on(today) && c.success_count >= merchant.list_threshold)
            .map(|c| OfferCard {
                token: c.token.clone(),
                card: MaskedCard::of(c),
            })
            .collect(),
        _ => Vec::new(),
    };
    Offer {
        status,
        save_offer: enabled && merchant.mode.offers_saving() && !deny && !fraud,
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

/// Order status from the stored row.
pub fn order_status(row: OrderRow, card: Option<CardRecord>) -> EngineResult<OrderStatus> {
    let corrupt =
        |what: &str| EngineError::Vault(VaultError::Corrupt(format!("order {}: {what}", row.id)));
    let amount = crate::domain::Amount::from_minor(row.amount).ok_or_else(|| corrupt("amount"))?;
    Ok(OrderStatus {
        merchant_id: row.merchant_id,
        kind: row.kind.clone(),
        order_state: OrderState::parse(&row.state).map_err(|_| corrupt("state"))?,
        response_code: ResponseCode::parse(&row.response_code)
            .map_err(|_| corrupt("response code"))?,
        amount: amount.to_string(),
        currency: row.currency.clone(),
        created_at: iso_time(row.created_at),
        updated_at: iso_time(row.updated_at),
        token: card.as_ref().map(|c| c.token.clone()),
        card: card.as_ref().map(MaskedCard::of),
        order_number: row.order_number,
    })
}
