//! Payments at the facade: the order's fields into domain types (R1 One Click enabled, R2 the
//! signature over the values as received, R3 recurring fields), the new card's fields, the checks
//! that need no customer (R8 CVC required, R18 modes), the request digest that recognises a
//! repeat (R16); then the typed message to the customer's actor (`customer::PayNewCard`,
//! `customer::Register`, `customer::PaySavedCard`), or, without a customer (a plain or recurring
//! payment), the decision (`crate::decide::payment`) and the pipeline (`crate::pipeline`) right
//! here. Nothing here decides a rule over the customer's state.

use std::sync::Arc;

use super::requests::*;
use super::{Engine, EngineResult, PaymentResult};
use crate::customer::{PayNewCard, PaySavedCard, Register, SavedCardChannel};
use crate::decide::{self, ValidCard, ValidOrder};
use crate::domain::{
    recurring, signature, Amount, CardholderName, Currency, CustomerNumber, Cvc, Expiry, OrderKind,
    OrderNumber, Pan, Token,
};
use crate::fault::Fault;
use crate::pipeline::RequestDigest;
use crate::vault::records::MerchantRecord;

/// Who sends an order decides how its fields are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderPolicy {
    /// The payment page (offer, payments): signed (R2) when it names a customer, a positive
    /// amount.
    PaymentPage,
    /// A registration on the payment page: signed (R2), and the amount may be zero (R13: the
    /// card is verified, nothing is paid).
    Registration,
    /// The merchant's own web services (Token Pay, R14) and merchant-initiated charges (R15):
    /// authenticated by the caller's credentials or by the agreement, not by an order
    /// signature; a positive amount.
    Authenticated,
}

impl OrderPolicy {
    fn checks_signature(self) -> bool {
        matches!(self, OrderPolicy::PaymentPage | OrderPolicy::Registration)
    }

    fn allows_zero_amount(self) -> bool {
        self == OrderPolicy::Registration
    }
}

/// Validates the order fields; with a customer number, checks One Click is enabled (R1) and,
/// when the policy asks for it, the signature over the values as received (R2).
pub fn validate_order(
    merchant: &MerchantRecord,
    order: &OrderInput,
    policy: OrderPolicy,
) -> EngineResult<ValidOrder> {
    let order_number = OrderNumber::parse(&order.order_number)?;
    let amount = Amount::parse(&order.amount)?;
    if amount.is_zero() && !policy.allows_zero_amount() {
        return Err(Fault::InvalidAmount.into());
    }
    let currency = Currency::parse(&order.currency)?;
    let customer = match &order.customer_number {
        None => None,
        Some(raw) => {
            if !merchant.oneclick_enabled {
                return Err(Fault::OneClickDisabled.into());
            }
            let number = CustomerNumber::parse(raw)?;
            if policy.checks_signature() {
                let msg = signature::message(
                    &merchant.id.to_string(),
                    &order.order_number,
                    &order.amount,
                    &order.currency,
                    raw,
                );
                let given = order.signature.as_deref().ok_or(Fault::InvalidSignature)?;
                signature::verify_rotating(
                    merchant.signature_key.expose(),
                    merchant.previous_signature_key_at(crate::vault::now_ms()),
                    &msg,
                    given,
                )?;
            }
            Some(number)
        }
    };
    Ok(ValidOrder {
        order_number,
        amount,
        currency,
        customer,
    })
}

/// A new card's fields into domain types; an expired card is refused (R8: the CVC when
/// `cvc_required`).
pub fn validate_card(
    card: &NewCardInput,
    today: chrono::NaiveDate,
    cvc_required: bool,
) -> EngineResult<ValidCard> {
    let pan = Pan::parse(card.number.expose())?;
    let month: u32 = card
        .expiry_month
        .trim()
        .parse()
        .map_err(|_| Fault::InvalidExpiry)?;
    let year: u32 = card
        .expiry_year
        .trim()
        .parse()
        .map_err(|_| Fault::InvalidExpiry)?;
    let expiry = Expiry::from_parts(month, year)?;
    if expiry.is_expired_on(today) {
        return Err(Fault::InvalidExpiry.into());
    }
    let holder = CardholderName::parse(&card.holder)?;
    let cvc = match &card.cvc {
        Some(raw) => Some(Cvc::parse(raw.expose())?),
        None if cvc_required => return Err(Fault::MissingField.into()),
        None => None,
    };
    if cvc.as_ref().is_some_and(|c| !c.fits(pan.brand())) {
        return Err(Fault::InvalidCvc.into());
    }
    Ok(ValidCard {
        pan,
        expiry,
        holder,
        cvc,
    })
}

fn digest(
    engine: &Engine,
    kind: OrderKind,
    order: &ValidOrder,
    card_identity: &[u8],
) -> RequestDigest {
    engine.deps.keyring.request_digest(&[
        kind.as_str().as_bytes(),
        &order.amount.minor().to_be_bytes(),
        order.currency.as_str().as_bytes(),
        order
            .customer
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("")
            .as_bytes(),
        card_identity,
    ])
}

pub(super) async fn pay_new_card(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: PayNewCardRequest,
) -> EngineResult<PaymentResult> {
    let order = validate_order(&merchant, &req.order, OrderPolicy::PaymentPage)?;
    recurring::check_exclusive(order.customer.is_some(), req.recurring.any_present())?;
    let recurring = req.recurring.parse()?;
    let card = Arc::new(validate_card(&req.card, merchant.today(), true)?);
    let fingerprint = engine
        .deps
        .keyring
        .fingerprint(card.pan.expose().as_bytes());
    let kind = match recurring {
        Some(_) => OrderKind::RecurringInitial,
        None => OrderKind::Purchase,
    };
    let digest = digest(engine, kind, &order, &fingerprint);
    // R4: an absent answer to the save offer means yes.
    let save_answer = req.save.unwrap_or(true);
    let Some(number) = &order.customer else {
        let plan =
            decide::new_card_payment(None, &merchant, &order, &card, save_answer, recurring)?;
        return engine.deps.pipeline.execute(plan, digest, None).await.0;
    };
    let key = Engine::customer_key(&merchant, number);
    let msg = PayNewCard {
        merchant,
        order,
        card,
        save_answer,
        digest,
        reload: false,
    };
    engine.pay_in_actor(&key, msg).await
}

pub(super) async fn register(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: RegisterRequest,
) -> EngineResult<PaymentResult> {
    let order = validate_order(&merchant, &req.order, OrderPolicy::Registration)?;
    decide::payment::may_register(&merchant, &order)?;
    let card = Arc::new(validate_card(&req.card, merchant.today(), true)?);
    let fingerprint = engine
        .deps
        .keyring
        .fingerprint(card.pan.expose().as_bytes());
    let digest = digest(engine, OrderKind::Registration, &order, &fingerprint);
    let Some(number) = &order.customer else {
        let plan = decide::registration(None, &merchant, &order, &card)?;
        return engine.deps.pipeline.execute(plan, digest, None).await.0;
    };
    let key = Engine::customer_key(&merchant, number);
    let msg = Register {
        merchant,
        order,
        card,
        digest,
        reload: false,
    };
    engine.pay_in_actor(&key, msg).await
}

pub(super) async fn pay_saved_card(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: PaySavedCardRequest,
) -> EngineResult<PaymentResult> {
    let order = validate_order(&merchant, &req.order, OrderPolicy::PaymentPage)?;
    let cvc = req
        .cvc
        .as_ref()
        .map(|c| Cvc::parse(c.expose()))
        .transpose()?;
    if merchant.need_cvc && cvc.is_none() {
        return Err(Fault::CvcRequired.into());
    }
    let channel = SavedCardChannel::PaymentPage { cvc };
    pay_with_token(engine, merchant, order, &req.token, channel).await
}

pub(super) async fn token_pay(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: TokenPayRequest,
) -> EngineResult<PaymentResult> {
    if req.token_type != 5 {
        return Err(Fault::InvalidTokenType.into());
    }
    // Authenticated by the merchant's web-service credentials, not an order signature (R14).
    let order = validate_order(&merchant, &req.order, OrderPolicy::Authenticated)?;
    pay_with_token(
        engine,
        merchant,
        order,
        &req.token,
        SavedCardChannel::TokenPay,
    )
    .await
}

/// A payment with a saved card, on the payment page or by Token Pay, as `channel` says.
async fn pay_with_token(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    order: ValidOrder,
    raw_token: &str,
    channel: SavedCardChannel,
) -> EngineResult<PaymentResult> {
    let number = order.customer.clone().ok_or(Fault::MissingField)?;
    decide::payment::may_pay_with_saved_card(&merchant)?;
    // Malformed: 3/9; well-formed but not this customer's: 4/1 whoever owns it (R17).
    let token = Token::parse(raw_token)?;
    let digest = digest(engine, channel.kind(), &order, token.as_str().as_bytes());
    let key = Engine::customer_key(&merchant, &number);
    let msg = PaySavedCard {
        merchant,
        order,
        token,
        channel,
        digest,
        reload: false,
    };
    engine.pay_in_actor(&key, msg).await
}

pub(super) async fn recurring_charge(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: RecurringChargeRequest,
) -> EngineResult<PaymentResult> {
    let order = validate_order(
        &merchant,
        &OrderInput {
            merchant_id: req.merchant_id,
            order_number: req.order_number.clone(),
            amount: req.amount.clone(),
            currency: req.currency.clone(),
            customer_number: None,
            signature: None,
        },
        OrderPolicy::Authenticated,
    )?;
    let initial = OrderNumber::parse(&req.initial_order_number)?;
    let digest = digest(
        engine,
        OrderKind::RecurringCharge,
        &order,
        initial.as_str().as_bytes(),
    );
    let plan = decide::recurring_charge(&merchant, &order, &initial, merchant.today());
    engine.deps.pipeline.execute(plan, digest, None).await.0
}
