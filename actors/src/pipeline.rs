//! The payment pipeline, one for every kind: reserve (idempotency R16, the customer's lock, fraud
//! R6 and the card as committed, turnover limits R12) → the acquirer → complete (the outcome,
//! the card's counters, saving R5/R11, the agreement R15), around a [`Plan`] that
//! `crate::decide::payment` made.
//!
//! One Click payments run it inside the customer's actor (`crate::customer`), so a customer's
//! payments never overlap in this process; payments without a customer (plain and recurring)
//! run it directly from the engine, serialised by the database (unique order, agreement row
//! lock).

use std::sync::Arc;
use std::time::Duration;

use crate::acquirer::{Acquirer, AuthCvc, AuthKind, AuthPan, AuthRequest, AuthState};
use crate::decide::{CardSource, NextState, Plan};
use crate::domain::{limits, Currency, MaskedCard, OrderState, PaymentResult, ResponseCode};
use crate::error::{EngineError, EngineResult};
use crate::fault::Fault;
use crate::vault::group_commit::GroupCommit;
use crate::vault::payments::{
    AgreementCharge, Complete, Completed, LimitCheck, NewAgreement, Reservation, Reserve, SaveCard,
};
use crate::vault::records::{CustomerSnapshot, MerchantRecord};
use crate::vault::{now_ms, VaultError};

/// The keyed digest of a payment's content that recognises a repeat of its order (R16).
pub type RequestDigest = [u8; 32];

/// What the pipeline writes through and asks.
pub struct Pipeline {
    /// Payment steps, grouped into shared transactions (`vault::group_commit`).
    pub writer: GroupCommit,
    pub acquirer: Arc<dyn Acquirer>,
    /// An order left In Process longer than this by a failed process is recorded in doubt.
    pub in_doubt_after: Duration,
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

impl Pipeline {
    /// Makes the payment `plan` describes; `cached` is the customer's snapshot the plan was made
    /// from (for the cache update). Returns the reply and what the customer's cache becomes.
    pub async fn execute(
        &self,
        plan: Plan,
        digest: RequestDigest,
        cached: Option<Arc<CustomerSnapshot>>,
    ) -> (EngineResult<PaymentResult>, NextState) {
        execute(self, plan, digest, cached).await
    }
}

async fn execute(
    deps: &Pipeline,
    plan: Plan,
    digest: RequestDigest,
    cached: Option<Arc<CustomerSnapshot>>,
) -> (EngineResult<PaymentResult>, NextState) {
    let mut result = base_result(&plan);
    let customer = plan
        .order
        .customer
        .as_ref()
        .map(|c| (plan.merchant.union_id, c.as_str().to_string()));
    let has_customer = customer.is_some();
    let (token, agreement) = match &plan.card {
        CardSource::Saved { record, .. } => (Some(record.token.clone()), None),
        CardSource::Agreement {
            initial_order_number,
            today,
        } => (
            None,
            Some(AgreementCharge {
                initial_order_number: initial_order_number.as_str().to_string(),
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
        digest,
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
            if age_ms < deps.in_doubt_after.as_millis() as i64 {
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

    let save = match (&plan.card, plan.save, &plan.order.customer) {
        (CardSource::New(c), true, Some(number)) => Some(SaveCard {
            customer_number: number.as_str().to_string(),
            pan: c.pan.clone(),
            expiry: c.expiry,
            holder: c.holder.as_str().to_string(),
        }),
        _ => None,
    };
    let new_agreement = match (&plan.card, &plan.new_agreement) {
        (CardSource::New(c), Some(params)) => Some(NewAgreement {
            initial_date: plan.merchant.today(),
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
            let next = match (done.snapshot, &cached) {
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
async fn complete_with_retry(deps: &Pipeline, msg: Complete) -> EngineResult<Completed> {
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
