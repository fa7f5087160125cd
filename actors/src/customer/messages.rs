//! The customer verbs: one message per command the customer actor runs, each with its handler
//! beside it. A handler is [`CustomerActor::serve`] around four steps: the snapshot it is given →
//! a pure decision of `crate::decide` → persist (the payment [`Pipeline`](crate::pipeline::Pipeline)
//! through group commit, or one vault transaction) → the next state of the cache and the reply.
//!
//! Messages hold validated domain values (the engine facade validated the fields, checked the
//! merchant and the signature, and computed the request digest), so a handler never parses.
//! They are `Clone`: the engine re-sends one to a fresh actor when the first had retired, and
//! the payments once more with a reloaded snapshot ([`Reload`]).

use std::sync::Arc;

use actix::prelude::*;

use super::{CustomerActor, Deps, Load};
use crate::decide::{self, NextState, Plan, SavedCardChannel, ValidCard, ValidOrder};
use crate::domain::status::{StatusChange, StatusEffect};
use crate::domain::{PaymentResult, Token};
use crate::error::{flatten, EngineError, EngineResult};
use crate::fault::Fault;
use crate::pipeline::RequestDigest;
use crate::reply::{Offer, StatusChanged, TokenListEntry, TokenRemoved};
use crate::vault::audit::Record;
use crate::vault::customers::{self, Applied, CommandKey, DeleteOutcome};
use crate::vault::now_ms;
use crate::vault::records::{CustomerSnapshot, MerchantRecord};

/// A payment message the engine sends again, once, with the snapshot reloaded from the vault
/// when the cached one refused the card (4/1 not found, expired): another process may have
/// saved or renewed it since.
pub trait Reload {
    fn reloading(self) -> Self;
}

/// Pay with a new card on the payment page, saving it when offered and agreed (R4, R5, R11).
/// (A plain or recurring initial payment has no customer and no actor: the engine runs the
/// same decision and the pipeline directly.)
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<PaymentResult>")]
pub struct PayNewCard {
    pub merchant: Arc<MerchantRecord>,
    pub order: ValidOrder,
    pub card: Arc<ValidCard>,
    /// R4: the customer's answer to the save offer (absent on the page = yes).
    pub save_answer: bool,
    pub digest: RequestDigest,
    /// Load the snapshot from the vault whatever the cache holds.
    pub reload: bool,
}

/// A registration transaction (R13): verify the card, no payment, save it when offered.
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<PaymentResult>")]
pub struct Register {
    pub merchant: Arc<MerchantRecord>,
    pub order: ValidOrder,
    pub card: Arc<ValidCard>,
    pub digest: RequestDigest,
    pub reload: bool,
}

/// Pay with a saved card: on the payment page (R8) or by Token Pay (R14), as `channel` says.
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<PaymentResult>")]
pub struct PaySavedCard {
    pub merchant: Arc<MerchantRecord>,
    pub order: ValidOrder,
    pub token: Token,
    pub channel: SavedCardChannel,
    pub digest: RequestDigest,
    pub reload: bool,
}

/// Delete a card (R10), by the customer on the payment page or by the merchant; idempotent by
/// command id (R16) and audited.
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<TokenRemoved>")]
pub struct DeleteCard {
    pub token: Token,
    pub command: Option<CommandKey>,
    pub audit: Record,
}

/// Set or clear the customer's flags (R6); idempotent by command id (R16) and audited.
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<StatusChanged>")]
pub struct SetStatus {
    pub change: StatusChange,
    pub command: Option<CommandKey>,
    pub audit: Record,
}

/// What the payment page offers this customer (R4, R7, R18); read-only. Sent only when the
/// registry slot holds no fresh snapshot (the engine answers from a fresh one itself).
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<Offer>")]
pub struct ShowOffer {
    pub merchant: Arc<MerchantRecord>,
}

/// The merchant token list of this customer (docs/rules.md §4); read-only, like [`ShowOffer`].
#[derive(Message, Clone)]
#[rtype(result = "EngineResult<Vec<TokenListEntry>>")]
pub struct ListTokens {
    pub merchant: Arc<MerchantRecord>,
}

macro_rules! reload {
    ($($message:ty),*) => {$(
        impl Reload for $message {
            fn reloading(self) -> Self {
                Self { reload: true, ..self }
            }
        }
    )*};
}
reload!(PayNewCard, Register, PaySavedCard);

type Reply<R> = AtomicResponse<CustomerActor, EngineResult<R>>;

/// A decided payment through the pipeline; a refused one stores nothing and keeps the cache.
async fn pay(
    deps: &Deps,
    plan: Result<Plan, Fault>,
    digest: RequestDigest,
    snapshot: Option<Arc<CustomerSnapshot>>,
) -> (EngineResult<PaymentResult>, NextState) {
    match plan {
        Ok(plan) => deps.pipeline.execute(plan, digest, snapshot).await,
        Err(refused) => (Err(refused.into()), NextState::Keep),
    }
}

impl Handler<PayNewCard> for CustomerActor {
    type Result = Reply<PaymentResult>;

    fn handle(&mut self, msg: PayNewCard, _: &mut Context<Self>) -> Self::Result {
        let load = Load::payment(msg.reload, Load::CachedOrUnread);
        self.serve(load, move |deps, snapshot| async move {
            let plan = decide::new_card_payment(
                snapshot.as_deref(),
                &msg.merchant,
                &msg.order,
                &msg.card,
                msg.save_answer,
                None,
            );
            pay(&deps, plan, msg.digest, snapshot).await
        })
    }
}

impl Handler<Register> for CustomerActor {
    type Result = Reply<PaymentResult>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let load = Load::payment(msg.reload, Load::CachedOrUnread);
        self.serve(load, move |deps, snapshot| async move {
            let plan =
                decide::registration(snapshot.as_deref(), &msg.merchant, &msg.order, &msg.card);
            pay(&deps, plan, msg.digest, snapshot).await
        })
    }
}

impl Handler<PaySavedCard> for CustomerActor {
    type Result = Reply<PaymentResult>;

    fn handle(&mut self, msg: PaySavedCard, _: &mut Context<Self>) -> Self::Result {
        let load = Load::payment(msg.reload, Load::CachedOrRead);
        self.serve(load, move |deps, snapshot| async move {
            let plan = decide::saved_card_payment(
                snapshot.as_deref(),
                &msg.merchant,
                &msg.order,
                &msg.token,
                &msg.channel,
                msg.merchant.today(),
            );
            pay(&deps, plan, msg.digest, snapshot).await
        })
    }
}

impl Handler<DeleteCard> for CustomerActor {
    type Result = Reply<TokenRemoved>;

    fn handle(&mut self, msg: DeleteCard, _: &mut Context<Self>) -> Self::Result {
        self.serve(Load::CachedOrRead, move |deps, snapshot| async move {
            let replayable = msg.command.is_some();
            let customer_id =
                match decide::card_to_delete(snapshot.as_deref(), &msg.token, replayable) {
                    Ok(id) => id,
                    Err(refused) => return (Err(refused.into()), NextState::Keep),
                };
            let removed = TokenRemoved::of(msg.token.as_str());
            let sent = deps
                .vault
                .send(customers::DeleteCard {
                    customer_id,
                    token: msg.token.as_str().to_string(),
                    command: msg.command,
                    result_json: json(&removed),
                    now_ms: now_ms(),
                    audit: msg.audit,
                })
                .await;
            match flatten(sent) {
                Ok(Applied::Done(DeleteOutcome::Deleted(s))) => {
                    (Ok(removed), NextState::Replace(Some(Arc::new(s))))
                }
                Ok(Applied::Done(DeleteOutcome::NotFound)) => {
                    (Err(Fault::TokenNotFound.into()), NextState::Invalidate)
                }
                Ok(Applied::Replay(stored)) => (parse_stored(&stored), NextState::Invalidate),
                Ok(Applied::Conflict) => (Err(Fault::IdempotencyConflict.into()), NextState::Keep),
                Err(e) => (Err(e), NextState::Invalidate),
            }
        })
    }
}

impl Handler<SetStatus> for CustomerActor {
    type Result = Reply<StatusChanged>;

    fn handle(&mut self, msg: SetStatus, _: &mut Context<Self>) -> Self::Result {
        let key = self.key.clone();
        self.serve(Load::CachedOrRead, move |deps, _snapshot| async move {
            let today = chrono::Utc::now().date_naive();
            let StatusEffect {
                deny,
                fraud,
                delete_cards: leave,
            } = msg.change.effect();
            let number = key.customer_number.clone();
            let sent = deps
                .vault
                .send(customers::SetStatus {
                    union_id: key.union_id,
                    customer_number: key.customer_number.to_string(),
                    deny,
                    fraud,
                    leave,
                    command: msg.command,
                    // The reply stored with the effect (R16), from the customer as committed.
                    reply: Box::new(move |s| {
                        json(&decide::status_changed(&number, s, leave, today))
                    }),
                    now_ms: now_ms(),
                    audit: msg.audit,
                })
                .await;
            match flatten(sent) {
                Ok(Applied::Done(s)) => {
                    let reply = decide::status_changed(&key.customer_number, &s, leave, today);
                    (Ok(reply), NextState::Replace(Some(Arc::new(s))))
                }
                Ok(Applied::Replay(stored)) => (parse_stored(&stored), NextState::Invalidate),
                Ok(Applied::Conflict) => (Err(Fault::IdempotencyConflict.into()), NextState::Keep),
                Err(e) => (Err(e), NextState::Invalidate),
            }
        })
    }
}

impl Handler<ShowOffer> for CustomerActor {
    type Result = Reply<Offer>;

    fn handle(&mut self, msg: ShowOffer, _: &mut Context<Self>) -> Self::Result {
        self.serve(Load::CachedOrRead, move |_deps, snapshot| async move {
            let today = msg.merchant.today();
            let offer = decide::offer(&msg.merchant, snapshot.as_deref(), today);
            (Ok(offer), NextState::Keep)
        })
    }
}

impl Handler<ListTokens> for CustomerActor {
    type Result = Reply<Vec<TokenListEntry>>;

    fn handle(&mut self, msg: ListTokens, _: &mut Context<Self>) -> Self::Result {
        self.serve(Load::CachedOrRead, move |_deps, snapshot| async move {
            let today = msg.merchant.today();
            let tokens = decide::token_list(&msg.merchant, snapshot.as_deref(), today);
            (Ok(tokens), NextState::Keep)
        })
    }
}

/// A reply as stored with a command's effect, to answer its repeats (R16).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn parse_stored<T: serde::de::DeserializeOwned>(stored: &str) -> EngineResult<T> {
    serde_json::from_str(stored).map_err(|e| {
        EngineError::Vault(crate::vault::VaultError::Corrupt(format!(
            "stored result: {e}"
        )))
    })
}
