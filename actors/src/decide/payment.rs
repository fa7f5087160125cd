//! Which payment to make: from the validated order and the customer's snapshot to a [`Plan`]
//! the pipeline (`crate::pipeline`) carries out. One function per kind of payment, each pure:
//! fraud refuses (R6), saving follows the save offer and the customer's answer (R4, R5, R13), a
//! saved card must be this customer's and usable today (R7, R17), its CVC must fit (R8), the
//! modes allow or forbid (R18), an agreement charge names its initial order (R15).
//!
//! The rules checked again under the customer's database lock (fraud, a card deleted meanwhile,
//! the turnover limits R12, the agreement's terms) are decided there by the same functions of
//! `crate::domain` (`status::refuses_payments`, `limits::check`, `recurring::check_charge`).

use std::sync::Arc;

use chrono::NaiveDate;

use super::{refuse_fraud, save_offered};
use crate::acquirer::AuthKind;
use crate::domain::{
    Amount, CardState, CardholderName, Currency, CustomerNumber, Cvc, Expiry, OrderKind,
    OrderNumber, Pan, RecurringParams, Token,
};
use crate::fault::Fault;
use crate::vault::records::{CardRecord, CustomerSnapshot, MerchantRecord};

/// An order whose fields passed validation (R1, R2, R3: `crate::engine::payment::validate_order`).
#[derive(Debug, Clone)]
pub struct ValidOrder {
    pub order_number: OrderNumber,
    pub amount: Amount,
    pub currency: Currency,
    pub customer: Option<CustomerNumber>,
}

/// A new card's fields, validated (an expired card is refused before it gets here).
#[derive(Debug, Clone)]
pub struct ValidCard {
    pub pan: Pan,
    pub expiry: Expiry,
    pub holder: CardholderName,
    pub cvc: Option<Cvc>,
}

/// Where a payment with a saved card comes from: the type names the kind of order it makes.
#[derive(Debug, Clone)]
pub enum SavedCardChannel {
    /// The payment page (R8): the CVC when given (the facade has required it when the merchant
    /// needs it).
    PaymentPage { cvc: Option<Cvc> },
    /// Token Pay (R14): the merchant's own UI, authenticated by its credentials, no CVC.
    TokenPay,
}

impl SavedCardChannel {
    pub fn kind(&self) -> OrderKind {
        match self {
            SavedCardChannel::PaymentPage { .. } => OrderKind::SavedCard,
            SavedCardChannel::TokenPay => OrderKind::TokenPay,
        }
    }

    fn cvc(&self) -> Option<&Cvc> {
        match self {
            SavedCardChannel::PaymentPage { cvc } => cvc.as_ref(),
            SavedCardChannel::TokenPay => None,
        }
    }
}

/// Where the card of a payment comes from.
#[derive(Debug, Clone)]
pub enum CardSource {
    /// Typed on the payment page now.
    New(Arc<ValidCard>),
    /// Saved: the customer's card as cached (the vault reads and decrypts it again under the
    /// customer's lock), and the CVC typed for this payment.
    Saved {
        record: CardRecord,
        cvc: Option<Cvc>,
    },
    /// The card of a recurring agreement (R15), charged on `today` (merchant's zone).
    Agreement {
        initial_order_number: OrderNumber,
        today: NaiveDate,
    },
}

/// Everything the pipeline needs to make one payment, as decided.
#[derive(Debug, Clone)]
pub struct Plan {
    pub merchant: Arc<MerchantRecord>,
    pub kind: OrderKind,
    pub order: ValidOrder,
    pub card: CardSource,
    /// Save the new card if the payment is approved (R4, R5; the vault re-checks the flags).
    pub save: bool,
    /// Create this recurring agreement if the initial payment is approved (R15).
    pub new_agreement: Option<RecurringParams>,
    pub auth_kind: AuthKind,
}

/// R18 (with R13): a registration of a One Click customer needs a mode that saves new cards.
/// Checked by the facade before the card is validated.
pub fn may_register(merchant: &MerchantRecord, order: &ValidOrder) -> Result<(), Fault> {
    if order.customer.is_some() && !merchant.mode.may_save_new_cards() {
        return Err(Fault::ModeForbids);
    }
    Ok(())
}

/// R18: paying with a saved card needs a mode that allows it. Checked by the facade.
pub fn may_pay_with_saved_card(merchant: &MerchantRecord) -> Result<(), Fault> {
    if !merchant.mode.may_pay_with_saved_card() {
        return Err(Fault::ModeForbids);
    }
    Ok(())
}

/// A payment with a new card (R13 financial transaction), or the initial payment of a recurring
/// agreement (R15, never with a customer: R3). R6: a fraud customer is refused. R4/R5: the card
/// is saved when saving is offered to this customer and the customer did not decline
/// (`save_answer`, an absent answer meaning yes).
pub fn new_card_payment(
    snapshot: Option<&CustomerSnapshot>,
    merchant: &Arc<MerchantRecord>,
    order: &ValidOrder,
    card: &Arc<ValidCard>,
    save_answer: bool,
    recurring: Option<RecurringParams>,
) -> Result<Plan, Fault> {
    refuse_fraud(snapshot)?;
    let (kind, auth_kind) = match recurring {
        Some(_) => (OrderKind::RecurringInitial, AuthKind::RecurringInitial),
        None => (OrderKind::Purchase, AuthKind::Purchase),
    };
    Ok(Plan {
        merchant: merchant.clone(),
        kind,
        order: order.clone(),
        card: CardSource::New(card.clone()),
        save: order.customer.is_some() && save_answer && save_offered(merchant, snapshot),
        new_agreement: recurring,
        auth_kind,
    })
}

/// R13: a registration verifies the card (no payment) and saves it whenever saving is offered
/// (R4); R6: a fraud customer is refused.
pub fn registration(
    snapshot: Option<&CustomerSnapshot>,
    merchant: &Arc<MerchantRecord>,
    order: &ValidOrder,
    card: &Arc<ValidCard>,
) -> Result<Plan, Fault> {
    refuse_fraud(snapshot)?;
    Ok(Plan {
        merchant: merchant.clone(),
        kind: OrderKind::Registration,
        order: order.clone(),
        card: CardSource::New(card.clone()),
        save: order.customer.is_some() && save_offered(merchant, snapshot),
        new_agreement: None,
        auth_kind: AuthKind::Verify,
    })
}

/// R7/R17: the customer's card `token`, if this customer has it, not deleted; usable today.
fn saved_card(
    snapshot: Option<&CustomerSnapshot>,
    token: &Token,
    today: NaiveDate,
) -> Result<CardRecord, Fault> {
    let card = snapshot
        .and_then(|s| {
            s.cards
                .iter()
                .find(|c| c.token == token.as_str() && c.state != CardState::Deleted)
        })
        .ok_or(Fault::TokenNotFound)?;
    if !card.is_usable_on(today) {
        return Err(Fault::CardExpired);
    }
    Ok(card.clone())
}

/// A payment with a saved card, on the payment page (R8) or by Token Pay (R14): R6 fraud
/// refuses; the token must be a card of this customer usable today (R7, R17: another customer's
/// token is 4/1 as an unknown one); a CVC given must fit the card's brand.
pub fn saved_card_payment(
    snapshot: Option<&CustomerSnapshot>,
    merchant: &Arc<MerchantRecord>,
    order: &ValidOrder,
    token: &Token,
    channel: &SavedCardChannel,
    today: NaiveDate,
) -> Result<Plan, Fault> {
    refuse_fraud(snapshot)?;
    let record = saved_card(snapshot, token, today)?;
    let cvc = channel.cvc();
    if cvc.is_some_and(|c| !c.fits(record.brand)) {
        return Err(Fault::InvalidCvc);
    }
    Ok(Plan {
        merchant: merchant.clone(),
        kind: channel.kind(),
        order: order.clone(),
        card: CardSource::Saved {
            record,
            cvc: cvc.cloned(),
        },
        save: false,
        new_agreement: None,
        auth_kind: AuthKind::CardOnFile,
    })
}

/// R15: a merchant-initiated charge on the agreement of `initial` (no customer, no actor); the
/// agreement's terms are checked under its row lock by `domain::recurring::check_charge`.
pub fn recurring_charge(
    merchant: &Arc<MerchantRecord>,
    order: &ValidOrder,
    initial: &OrderNumber,
    today: NaiveDate,
) -> Plan {
    Plan {
        merchant: merchant.clone(),
        kind: OrderKind::RecurringCharge,
        order: order.clone(),
        card: CardSource::Agreement {
            initial_order_number: initial.clone(),
            today,
        },
        save: false,
        new_agreement: None,
        auth_kind: AuthKind::MerchantInitiated {
            network_tx_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MerchantMode;

    fn merchant(mode: MerchantMode) -> Arc<MerchantRecord> {
        Arc::new(crate::decide::tests::merchant(mode))
    }

    fn order(customer: Option<&str>) -> ValidOrder {
        ValidOrder {
            order_number: OrderNumber::parse("o-1").expect("order number"),
            amount: Amount::parse("10.00").expect("amount"),
            currency: Currency::parse("RUB").expect("currency"),
            customer: customer.map(|c| CustomerNumber::parse(c).expect("customer")),
        }
    }

    fn card(number: &str) -> Arc<ValidCard> {
        Arc::new(ValidCard {
            pan: Pan::parse(number).expect("pan"),
            expiry: Expiry::from_parts(12, 2030).expect("expiry"),
            holder: CardholderName::parse("IVAN IVANOV").expect("holder"),
            cvc: None,
        })
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 6).expect("date")
    }

    fn saved(token: &str, month: u32, year: u32, state: CardState) -> CardRecord {
        let pan = Pan::parse("4111111111111111").expect("pan");
        CardRecord {
            id: 7,
            token: token.into(),
            customer_id: 1,
            state,
            brand: pan.brand(),
            bin: "411111".into(),
            last4: "1111".into(),
            pan_length: 16,
            expiry: Expiry::from_parts(month, year).expect("expiry"),
            holder: "IVAN IVANOV".into(),
            saved_by_merchant: 1,
            saved_at: 0,
            last_used_at: None,
            success_count: 1,
            deleted_at: None,
        }
    }

    fn customer(deny: bool, fraud: bool, cards: Vec<CardRecord>) -> CustomerSnapshot {
        CustomerSnapshot {
            id: 1,
            deny,
            fraud,
            version: 1,
            cards,
        }
    }

    const TOKEN: &str = "C4244243-04EC-4006-BB82-D9EEBB7FBA30";

    fn token() -> Token {
        Token::parse(TOKEN).expect("token")
    }

    #[test]
    fn r4_a_new_card_is_saved_when_offered_and_not_declined() {
        let m = merchant(MerchantMode::Standard);
        let o = order(Some("ivan"));
        let c = card("4111111111111111");
        let plan = new_card_payment(None, &m, &o, &c, true, None).expect("a plan");
        assert!(plan.save, "offered to a new customer, answer absent or yes");
        assert_eq!(plan.kind, OrderKind::Purchase);
        let declined = new_card_payment(None, &m, &o, &c, false, None).expect("a plan");
        assert!(!declined.save, "the customer said no");
        let plain = new_card_payment(None, &m, &order(None), &c, true, None).expect("a plan");
        assert!(
            !plain.save,
            "no customer number: nothing to save it to (R1)"
        );
    }

    #[test]
    fn r6_a_fraud_customer_is_refused_and_a_denied_one_pays_without_saving() {
        let m = merchant(MerchantMode::Standard);
        let o = order(Some("ivan"));
        let c = card("4111111111111111");
        let fraud = customer(false, true, vec![saved(TOKEN, 12, 2030, CardState::Active)]);
        assert_eq!(
            new_card_payment(Some(&fraud), &m, &o, &c, true, None).map(|p| p.save),
            Err(Fault::CustomerFraud)
        );
        assert_eq!(
            registration(Some(&fraud), &m, &o, &c).map(|p| p.save),
            Err(Fault::CustomerFraud)
        );
        let channel = SavedCardChannel::TokenPay;
        assert_eq!(
            saved_card_payment(Some(&fraud), &m, &o, &token(), &channel, today()).map(|p| p.kind),
            Err(Fault::CustomerFraud)
        );
        let denied = customer(true, false, Vec::new());
        let plan = new_card_payment(Some(&denied), &m, &o, &c, true, None).expect("pays");
        assert!(!plan.save, "deny: no save offer, so nothing saved");
    }

    #[test]
    fn r13_a_registration_verifies_and_saves_when_saving_is_offered() {
        let o = order(Some("ivan"));
        let c = card("4111111111111111");
        let plan = registration(None, &merchant(MerchantMode::Standard), &o, &c).expect("plan");
        assert_eq!(plan.kind, OrderKind::Registration);
        assert_eq!(plan.auth_kind, AuthKind::Verify);
        assert!(plan.save);
        assert!(!plan.kind.moves_money(), "R12: a registration never counts");
        let saved_only = merchant(MerchantMode::SavedCardsOnly);
        assert_eq!(may_register(&saved_only, &o), Err(Fault::ModeForbids));
        assert_eq!(may_register(&saved_only, &order(None)), Ok(()));
    }

    #[test]
    fn r15_a_recurring_initial_payment_creates_its_agreement_and_a_charge_uses_it() {
        let m = merchant(MerchantMode::Standard);
        let params = RecurringParams {
            min: Amount::parse("1.00").expect("min"),
            max: Amount::parse("100.00").expect("max"),
            period_days: 30,
            max_date: NaiveDate::from_ymd_opt(2027, 12, 1).expect("date"),
        };
        let c = card("4111111111111111");
        let plan = new_card_payment(None, &m, &order(None), &c, true, Some(params)).expect("plan");
        assert_eq!(
            (plan.kind, plan.auth_kind, plan.new_agreement, plan.save),
            (
                OrderKind::RecurringInitial,
                AuthKind::RecurringInitial,
                Some(params),
                false
            )
        );
        let initial = OrderNumber::parse("o-1").expect("initial");
        let charge = recurring_charge(&m, &order(None), &initial, today());
        assert_eq!(charge.kind, OrderKind::RecurringCharge);
        assert!(matches!(charge.card, CardSource::Agreement { .. }));
    }

    #[test]
    fn r7_r17_a_saved_card_must_be_the_customers_own_and_usable_today() {
        let m = merchant(MerchantMode::Standard);
        let o = order(Some("ivan"));
        let page = SavedCardChannel::PaymentPage { cvc: None };
        let live = customer(
            false,
            false,
            vec![saved(TOKEN, 12, 2030, CardState::Active)],
        );
        let plan = saved_card_payment(Some(&live), &m, &o, &token(), &page, today()).expect("ok");
        assert_eq!(
            (plan.kind, plan.auth_kind),
            (OrderKind::SavedCard, AuthKind::CardOnFile)
        );
        let other = Token::parse("A0364A8C-6445-4B38-973D-5FD67D2DB3B0").expect("token");
        assert_eq!(
            saved_card_payment(Some(&live), &m, &o, &other, &page, today()).map(|p| p.kind),
            Err(Fault::TokenNotFound),
            "another customer's token is not found (R17)"
        );
        assert_eq!(
            saved_card_payment(None, &m, &o, &token(), &page, today()).map(|p| p.kind),
            Err(Fault::TokenNotFound)
        );
        let expired = customer(
            false,
            false,
            vec![saved(TOKEN, 11, 2026, CardState::Active)],
        );
        assert_eq!(
            saved_card_payment(Some(&expired), &m, &o, &token(), &page, today()).map(|p| p.kind),
            Err(Fault::CardExpired)
        );
        let deleted = customer(
            false,
            false,
            vec![saved(TOKEN, 12, 2030, CardState::Deleted)],
        );
        assert_eq!(
            saved_card_payment(Some(&deleted), &m, &o, &token(), &page, today()).map(|p| p.kind),
            Err(Fault::TokenNotFound)
        );
    }

    #[test]
    fn r8_a_cvc_that_does_not_fit_the_saved_cards_brand_is_refused() {
        let m = merchant(MerchantMode::Standard);
        let o = order(Some("ivan"));
        let live = customer(
            false,
            false,
            vec![saved(TOKEN, 12, 2030, CardState::Active)],
        );
        let four = SavedCardChannel::PaymentPage {
            cvc: Some(Cvc::parse("1234").expect("cvc")),
        };
        assert_eq!(
            saved_card_payment(Some(&live), &m, &o, &token(), &four, today()).map(|p| p.kind),
            Err(Fault::InvalidCvc),
            "a VISA takes a three-digit CVC2"
        );
        let token_pay = SavedCardChannel::TokenPay;
        let plan = saved_card_payment(Some(&live), &m, &o, &token(), &token_pay, today());
        assert_eq!(plan.map(|p| p.kind), Ok(OrderKind::TokenPay), "R14: no CVC");
    }

    #[test]
    fn r18_a_mode_without_saved_card_payments_refuses_them() {
        assert_eq!(
            may_pay_with_saved_card(&merchant(MerchantMode::SaveOnly)),
            Err(Fault::ModeForbids)
        );
        assert_eq!(
            may_pay_with_saved_card(&merchant(MerchantMode::Standard)),
            Ok(())
        );
    }
}
