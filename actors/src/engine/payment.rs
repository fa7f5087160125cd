//! Payments: validation of the order (R1, R2, R3), the decisions that need the customer's
//! snapshot (R6 fraud, R8 CVC, R18 modes, R5 save consent), and one pipeline for every kind:
//! reserve (idempotency R16, limits R12) → acquirer → complete (save R5/R11, agreement R15).
//!
//! One Click payments run the pipeline inside the customer's actor (see `customer.rs`), so a
//! customer's payments never overlap in this process; payments without a customer (plain and
//! recurring) run it directly, serialised by the database (unique order, agreement row lock).

use std::sync::Arc;
use std::time::Duration;

use super::replies::{MaskedCard, PaymentResult};
use super::requests::*;
use super::{decide, Engine, EngineError, EngineResult};
use crate::acquirer::{AuthCvc, AuthKind, AuthPan, AuthRequest, AuthState};
use crate::customer::registry::CustomerKey;
use crate::customer::Deps;
use crate::customer::NextState;
use crate::domain::{
    limits, recurring, signature, Amount, CardState, CardholderName, Currency, CustomerNumber, Cvc,
    Expiry, OrderKind, OrderNumber, OrderState, Pan, RecurringParams, ResponseCode, Token,
};
use crate::fault::Fault;
use crate::vault::payments::{
    AgreementCharge, Complete, LimitCheck, NewAgreement, Reservation, Reserve, SaveCard,
};
use crate::vault::records::{CardRecord, CustomerSnapshot, MerchantRecord};
use crate::vault::{now_ms, VaultError};

/// An order whose fields passed validation.
#[derive(Debug, Clone)]
pub struct ValidOrder {
    pub order_number: OrderNumber,
    pub amount: Amount,
    pub currency: Currency,
    pub customer: Option<CustomerNumber>,
}

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

/// A new card's fields, validated; expired cards are refused.
pub struct ValidCard {
    pub pan: Pan,
    pub expiry: Expiry,
    pub holder: CardholderName,
    pub cvc: Option<Cvc>,
}

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

/// Where the card of a payment comes from.
enum CardSource {
    New(ValidCard),
    Saved {
        record: CardRecord,
        cvc: Option<Cvc>,
    },
    Agreement {
        initial_order_number: String,
        today: chrono::NaiveDate,
    },
}

/// Everything the pipeline needs for one payment.
struct Plan {
    merchant: Arc<MerchantRecord>,
    kind: OrderKind,
    order: ValidOrder,
    union_id: i64,
    card: CardSource,
    save: bool,
    new_agreement: Option<RecurringParams>,
    auth_kind: AuthKind,
    digest: [u8; 32],
    /// The customer's cached snapshot the plan was made from (set by `run`).
    snapshot: Option<Arc<CustomerSnapshot>>,
}

fn today_for(merchant: &MerchantRecord) -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&merchant.time_zone)
        .date_naive()
}

fn digest(deps: &Deps, kind: OrderKind, order: &ValidOrder, card_identity: &[u8]) -> [u8; 32] {
    deps.keyring.request_digest(&[
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

fn base_result(plan: &Plan) -> PaymentResult {
    let (card, token) = match &plan.card {
        CardSource::New(c) => (
            Some(MaskedCard {
                number: c.pan.masked(),
                brand: c.pan.brand().as_str().to_string(),
                expire: c.expiry.display(),
                holder: c.holder.as_str().to_string(),
            }),
            None,
        ),
        CardSource::Saved { record, .. } => {
            (Some(MaskedCard::from(record)), Some(record.token.clone()))
        }
        CardSource::Agreement { .. } => (None, None),
    };
    // Stored as is when a limit declines the payment (R12); otherwise overwritten below.
    let code = limits::LimitExceeded::RESPONSE_CODE;
    PaymentResult {
        merchant_id: plan.merchant.id,
        order_number: plan.order.order_number.as_str().to_string(),
        kind: plan.kind,
        order_state: OrderState::Declined,
        response_code: code,
        message: code.message().to_string(),
        amount: plan.order.amount.to_string(),
        currency: plan.order.currency.as_str().to_string(),
        card,
        token,
        card_saved: false,
    }
}

fn limit_check(merchant: &MerchantRecord, currency: Currency) -> Option<LimitCheck> {
    let limits = merchant.limits_for(currency.as_str());
    if limits.day.is_none() && limits.week.is_none() {
        return None;
    }
    let (day_start, week_start) = limits::window_starts(chrono::Utc::now(), merchant.time_zone);
    Some(LimitCheck {
        limits,
        day_start_ms: day_start.timestamp_millis(),
        week_start_ms: week_start.timestamp_millis(),
    })
}

/// The pipeline. Returns the reply and what the customer's cache should become.
async fn execute(deps: &Deps, plan: Plan) -> (EngineResult<PaymentResult>, NextState) {
    let mut result = base_result(&plan);
    let customer = plan
        .order
        .customer
        .as_ref()
        .map(|c| (plan.union_id, c.as_str().to_string()));
    let has_customer = customer.is_some();
    let (token, agreement) = match &plan.card {
        CardSource::Saved { record, .. } => (Some(record.token.clone()), None),
        CardSource::Agreement {
            initial_order_number,
            today,
        } => (
            None,
            Some(AgreementCharge {
                initial_order_number: initial_order_number.clone(),
                today: *today,
            }),
        ),
        CardSource::New(_) => (None, None),
    };
    let reserve = Reserve {
        merchant_id: plan.merchant.id,
        order_number: plan.order.order_number.as_str().to_string(),
        kind: plan.kind,
        customer,
        token,
        agreement,
        amount: plan.order.amount.minor(),
        currency: plan.order.currency.as_str().to_string(),
        digest: plan.digest,
        // R12: only payments of One Click customers that move money (not a registration, R13).
        limits: if plan.kind.moves_money() && plan.order.customer.is_some() {
            limit_check(&plan.merchant, plan.order.currency)
        } else {
            None
        },
        limit_declined: result.clone(),
        now_ms: now_ms(),
    };
    let invalidate = if has_customer {
        NextState::Invalidate
    } else {
        NextState::Keep
    };
    let reservation = match deps
        .writer
        .reserve(reserve)
        .await
        .map_err(EngineError::from)
    {
        Ok(r) => r,
        Err(e) => return (Err(e), invalidate),
    };
    let (order_id, customer_id, reserved_card, agreement) = match reservation {
        Reservation::Reserved {
            order_id,
            customer_id,
            card,
            agreement,
        } => (order_id, customer_id, card, agreement),
        Reservation::Replay(Some(stored), _) => return (Ok(stored), NextState::Keep),
        Reservation::Replay(None, row) => {
            // Reserved but never completed. Young: still at the acquirer in some process.
            // Older than `in_doubt_after`: the process that reserved it died between the two
            // transactions; record it as Timeout (in doubt, AS998, the amount stays reserved,
            // R12) so it ends in a state merchants reconcile instead of In Process for good.
            let age_ms = now_ms().saturating_sub(row.updated_at);
            if age_ms < deps.settings.in_doubt_after.as_millis() as i64 {
                result.order_state = OrderState::InProcess;
                result.response_code = ResponseCode::AS300;
                result.message = ResponseCode::AS300.message().to_string();
                result.card = None;
                result.token = None;
                return (Ok(result), NextState::Keep);
            }
            result.order_state = OrderState::Timeout;
            result.response_code = ResponseCode::AS998;
            result.message = ResponseCode::AS998.message().to_string();
            result.card = None;
            result.token = None;
            tracing::warn!(
                order_id = row.id,
                age_ms,
                "order left In Process by a failed process: recorded as Timeout (in doubt)"
            );
            let resolve = Complete {
                merchant_id: row.merchant_id,
                order_id: row.id,
                customer_id: row.customer_id,
                state: OrderState::Timeout,
                response_code: ResponseCode::AS998,
                network_tx_id: None,
                used_card_id: None,
                save: None,
                new_agreement: None,
                charged_agreement: None,
                result,
                now_ms: now_ms(),
            };
            return match complete_with_retry(deps, resolve).await {
                Ok(done) => (Ok(done.result), invalidate),
                Err(e) => (Err(e), invalidate),
            };
        }
        Reservation::Conflict => return (Err(Fault::IdempotencyConflict.into()), NextState::Keep),
        Reservation::LimitExceeded(stored) => return (Ok(stored), invalidate),
        Reservation::CardUnavailable => return (Err(Fault::TokenNotFound.into()), invalidate),
        Reservation::AgreementNotFound => {
            return (Err(Fault::AgreementNotFound.into()), NextState::Keep)
        }
        Reservation::OutOfTerms => {
            return (Err(Fault::RecurringOutOfTerms.into()), NextState::Keep)
        }
        Reservation::CustomerFraud => return (Err(Fault::CustomerFraud.into()), invalidate),
    };

    // The card for the acquirer: typed now, or decrypted by the vault in the reservation.
    let (pan, expiry, cvc, used_card_id) = match (&plan.card, &reserved_card) {
        (CardSource::New(c), _) => (c.pan.clone(), c.expiry, c.cvc.clone(), None),
        (CardSource::Saved { cvc, .. }, Some((record, pan))) => {
            (pan.clone(), record.expiry, cvc.clone(), Some(record.id))
        }
        (CardSource::Agreement { .. }, Some((record, pan))) => {
            result.card = Some(MaskedCard::from(record));
            (pan.clone(), record.expiry, None, None)
        }
        _ => {
            return (
                Err(EngineError::Vault(VaultError::Corrupt(
                    "reservation without card".into(),
                ))),
                invalidate,
            )
        }
    };
    let auth_kind = match (&plan.auth_kind, &agreement) {
        (AuthKind::MerchantInitiated { .. }, Some((_, ntx, _))) => AuthKind::MerchantInitiated {
            network_tx_id: if plan.merchant.mit_cof {
                ntx.clone()
            } else {
                None
            },
        },
        (k, _) => k.clone(),
    };
    let outcome = deps
        .acquirer
        .authorize(AuthRequest {
            merchant_id: plan.merchant.id,
            order_number: plan.order.order_number.as_str().to_string(),
            amount_minor: plan.order.amount.minor(),
            currency: plan.order.currency.as_str().to_string(),
            pan: AuthPan::new(pan.expose().to_string()),
            expiry_month: expiry.month,
            expiry_year: expiry.year,
            cvc: cvc.map(|c| AuthCvc::new(c.expose().to_string())),
            kind: auth_kind,
        })
        .await;
    let state = match outcome.state {
        AuthState::Approved => OrderState::Approved,
        AuthState::Declined => OrderState::Declined,
        AuthState::Timeout => OrderState::Timeout,
    };
    let code = ResponseCode::parse(&outcome.response_code).unwrap_or(match state {
        OrderState::Approved => ResponseCode::AS000,
        OrderState::Timeout => ResponseCode::AS998,
        _ => ResponseCode::AS100,
    });
    result.order_state = state;
    result.response_code = code;
    result.message = code.message().to_string();

    let save = match (&plan.card, plan.save) {
        (CardSource::New(c), true) => Some(SaveCard {
            pan: c.pan.clone(),
            expiry: c.expiry,
            holder: c.holder.as_str().to_string(),
        }),
        _ => None,
    };
    let new_agreement = match (&plan.card, &plan.new_agreement) {
        (CardSource::New(c), Some(params)) => Some(NewAgreement {
            initial_date: today_for(&plan.merchant),
            pan: c.pan.clone(),
            expiry: c.expiry,
            holder: c.holder.as_str().to_string(),
            params: *params,
            currency: plan.order.currency.as_str().to_string(),
        }),
        _ => None,
    };
    let complete = Complete {
        merchant_id: plan.merchant.id,
        order_id,
        customer_id,
        state,
        response_code: code,
        network_tx_id: outcome.network_tx_id.clone(),
        used_card_id,
        save,
        new_agreement,
        charged_agreement: agreement.map(|(id, _, previous)| (id, previous)),
        result,
        now_ms: now_ms(),
    };
    let now = complete.now_ms;
    match complete_with_retry(deps, complete).await {
        Ok(done) => {
            let next = match (done.snapshot, &plan.snapshot) {
                (Some(s), _) => NextState::Replace(Some(Arc::new(s))),
                // The used card's counters moved: apply them to the cached copy (R7 order).
                (None, Some(cached)) => {
                    match used_card_id.filter(|_| state == OrderState::Approved) {
                        Some(card_id) => {
                            let mut s = (**cached).clone();
                            if let Some(c) = s.cards.iter_mut().find(|c| c.id == card_id) {
                                c.success_count += 1;
                                c.last_used_at = Some(now);
                            }
                            NextState::Replace(Some(Arc::new(s)))
                        }
                        None => NextState::Keep,
                    }
                }
                // A customer not cached before (its row may be new): reload next time.
                (None, None) => invalidate,
            };
            (Ok(done.result), next)
        }
        Err(e) => {
            tracing::error!(order_id, error = %e, "could not record the acquirer's answer; the order stays In Process");
            (Err(e), invalidate)
        }
    }
}

/// The acquirer has answered: recording it is worth a few retries over a short outage
/// (`Complete` is idempotent, so a retry after an unknown commit outcome applies nothing twice).
async fn complete_with_retry(
    deps: &Deps,
    msg: Complete,
) -> EngineResult<crate::vault::payments::Completed> {
    let mut delay = Duration::from_millis(100);
    loop {
        match deps.writer.complete(msg.clone()).await {
            Err(e) if e.is_transient() && delay <= Duration::from_secs(2) => {
                tracing::warn!(order_id = msg.order_id, error = %e, "recording a payment failed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other.map_err(EngineError::from),
        }
    }
}

/// Runs `plan_for(snapshot)` in the customer's actor, or directly when there is no customer.
async fn run<F>(
    engine: &Engine,
    merchant: &MerchantRecord,
    customer: Option<&CustomerNumber>,
    plan_for: F,
) -> EngineResult<PaymentResult>
where
    F: Fn(Option<&CustomerSnapshot>) -> EngineResult<Plan> + Clone + Send + 'static,
{
    let Some(number) = customer else {
        let plan = plan_for(None)?;
        return execute(&engine.deps, plan).await.0;
    };
    let key = CustomerKey {
        union_id: merchant.union_id,
        customer_number: Arc::from(number.as_str()),
    };
    let make_job = || -> crate::customer::Job<PaymentResult> {
        let plan_for = plan_for.clone();
        Box::new(
            move |deps: Arc<Deps>, snapshot: Option<Arc<CustomerSnapshot>>| {
                Box::pin(async move {
                    match plan_for(snapshot.as_deref()) {
                        Ok(mut plan) => {
                            plan.snapshot = snapshot;
                            execute(&deps, plan).await
                        }
                        Err(e) => (Err(e), NextState::Keep),
                    }
                })
            },
        )
    };
    match engine.on_customer(&key, make_job).await {
        // The cached snapshot may predate a card saved or renewed by another process: ask the
        // vault before refusing (nothing was stored by the first attempt).
        Err(e) if matches!(e.fault(), Fault::TokenNotFound | Fault::CardExpired) => {
            engine.on_customer_with(&key, true, make_job).await
        }
        other => other,
    }
}

pub(super) async fn pay_new_card(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: PayNewCardRequest,
) -> EngineResult<PaymentResult> {
    let order = validate_order(&merchant, &req.order, OrderPolicy::PaymentPage)?;
    recurring::check_exclusive(order.customer.is_some(), req.recurring.any_present())?;
    let params = req.recurring.parse()?;
    let today = today_for(&merchant);
    let card = validate_card(&req.card, today, true)?;
    let fingerprint = engine
        .deps
        .keyring
        .fingerprint(card.pan.expose().as_bytes());
    let kind = if params.is_some() {
        OrderKind::RecurringInitial
    } else {
        OrderKind::Purchase
    };
    let digest = digest(&engine.deps, kind, &order, &fingerprint);
    let consent = req.save.unwrap_or(true);
    let card = Arc::new(card);
    let m = merchant.clone();
    let o = order.clone();
    run(
        engine,
        &merchant,
        order.customer.as_ref(),
        move |snapshot| {
            decide::refuse_fraud(snapshot)?;
            // R4: saved when offered and not declined (an absent answer means yes).
            let save = o.customer.is_some() && consent && decide::save_offered(&m, snapshot);
            Ok(Plan {
                merchant: m.clone(),
                kind,
                order: o.clone(),
                union_id: m.union_id,
                card: CardSource::New(clone_card(&card)),
                save,
                new_agreement: params,
                auth_kind: if params.is_some() {
                    AuthKind::RecurringInitial
                } else {
                    AuthKind::Purchase
                },
                digest,
                snapshot: None,
            })
        },
    )
    .await
}

fn clone_card(c: &ValidCard) -> ValidCard {
    ValidCard {
        pan: c.pan.clone(),
        expiry: c.expiry,
        holder: c.holder.clone(),
        cvc: c.cvc.clone(),
    }
}

pub(super) async fn register(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    req: RegisterRequest,
) -> EngineResult<PaymentResult> {
    let order = validate_order(&merchant, &req.order, OrderPolicy::Registration)?;
    if order.customer.is_some() && !merchant.mode.may_save_new_cards() {
        return Err(Fault::ModeForbids.into());
    }
    let card = Arc::new(validate_card(&req.card, today_for(&merchant), true)?);
    let fingerprint = engine
        .deps
        .keyring
        .fingerprint(card.pan.expose().as_bytes());
    let digest = digest(&engine.deps, OrderKind::Registration, &order, &fingerprint);
    let m = merchant.clone();
    let o = order.clone();
    run(
        engine,
        &merchant,
        order.customer.as_ref(),
        move |snapshot| {
            decide::refuse_fraud(snapshot)?;
            Ok(Plan {
                merchant: m.clone(),
                kind: OrderKind::Registration,
                order: o.clone(),
                union_id: m.union_id,
                card: CardSource::New(clone_card(&card)),
                // R13: a registration saves the card whenever saving is offered (R4).
                save: o.customer.is_some() && decide::save_offered(&m, snapshot),
                new_agreement: None,
                auth_kind: AuthKind::Verify,
                digest,
                snapshot: None,
            })
        },
    )
    .await
}

/// The saved card of `token`, if this customer has it usable today.
fn saved_card(
    snapshot: Option<&CustomerSnapshot>,
    token: &Token,
    today: chrono::NaiveDate,
) -> EngineResult<CardRecord> {
    let card = snapshot
        .and_then(|s| {
            s.cards
                .iter()
                .find(|c| c.token == token.as_str() && c.state != CardState::Deleted)
        })
        .ok_or(Fault::TokenNotFound)?;
    if !card.is_usable_on(today) {
        return Err(Fault::CardExpired.into());
    }
    Ok(card.clone())
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
    pay_with_token(
        engine,
        merchant,
        order,
        &req.token,
        OrderKind::SavedCard,
        cvc,
    )
    .await
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
        OrderKind::TokenPay,
        None,
    )
    .await
}

/// A payment with a saved card: on the payment page (`saved_card`, CVC when the merchant
/// needs it, R8) or by Token Pay (`token_pay`, no CVC, R14).
async fn pay_with_token(
    engine: &Engine,
    merchant: Arc<MerchantRecord>,
    order: ValidOrder,
    raw_token: &str,
    kind: OrderKind,
    cvc: Option<Cvc>,
) -> EngineResult<PaymentResult> {
    let number = order.customer.clone().ok_or(Fault::MissingField)?;
    if !merchant.mode.may_pay_with_saved_card() {
        return Err(Fault::ModeForbids.into());
    }
    // Malformed: 3/9; well-formed but not this customer's: 4/1 whoever owns it (R17).
    let token = Token::parse(raw_token)?;
    let digest = digest(&engine.deps, kind, &order, token.as_str().as_bytes());
    let today = today_for(&merchant);
    let m = merchant.clone();
    run(engine, &merchant, Some(&number), move |snapshot| {
        decide::refuse_fraud(snapshot)?;
        let record = saved_card(snapshot, &token, today)?;
        if cvc.as_ref().is_some_and(|c| !c.fits(record.brand)) {
            return Err(Fault::InvalidCvc.into());
        }
        Ok(Plan {
            merchant: m.clone(),
            kind,
            order: order.clone(),
            union_id: m.union_id,
            card: CardSource::Saved {
                record,
                cvc: cvc.clone(),
            },
            save: false,
            new_agreement: None,
            auth_kind: AuthKind::CardOnFile,
            digest,
            snapshot: None,
        })
    })
    .await
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
        &engine.deps,
        OrderKind::RecurringCharge,
        &order,
        initial.as_str().as_bytes(),
    );
    let plan = Plan {
        merchant: merchant.clone(),
        kind: OrderKind::RecurringCharge,
        order,
        union_id: merchant.union_id,
        card: CardSource::Agreement {
            initial_order_number: initial.as_str().to_string(),
            today: today_for(&merchant),
        },
        save: false,
        new_agreement: None,
        auth_kind: AuthKind::MerchantInitiated {
            network_tx_id: None,
        },
        digest,
        snapshot: None,
    };
    execute(&engine.deps, plan).await.0
}
