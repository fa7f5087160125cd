//! The customer actor: one per (union, customer number). Every card change and every limit
//! check of a customer runs here, one message at a time, in arrival order.
//!
//! **Messages.** One per customer verb ([`messages`]): [`PayNewCard`], [`Register`],
//! [`PaySavedCard`] (payment page or Token Pay, as its [`SavedCardChannel`] says), [`DeleteCard`],
//! [`SetStatus`], [`ShowOffer`], [`ListTokens`]. Each handler is the same four steps: the
//! customer's snapshot (cached, or loaded from the vault; the new-card verbs of a customer not
//! cached load none, see [`Load::CachedOrUnread`]) → a pure decision of `crate::decide`
//! (no I/O) → persist (the payment [`Pipeline`] through group commit, or one vault transaction)
//! → the next state of the cache ([`NextState`]) → the reply. The engine (`crate::engine`) only
//! validates, builds the message and sends it.
//!
//! **No interleaving.** Handlers await the vault and the acquirer. They return
//! [`AtomicResponse`], which keeps the actor's mailbox closed until the handler's future has
//! resolved, so the next message of the same customer starts only after the previous one has
//! committed. (A plain `ResponseFuture` would let the next message start while the first awaits
//! the database; docs/stack.md has the measurement.) Across processes the same order is kept by
//! the database: each write transaction first bumps `customers.version` (see `vault`).
//!
//! **State.** The actor caches its customer's [`CustomerSnapshot`] (flags and cards, masked; never
//! a PAN) so read-only requests (offer, token list) skip the database. The cache is kept in the
//! actor's registry slot, where readers find it without a message to
//! the actor; only the actor writes it. It is refreshed from every write's own transaction and
//! reloaded when older than `state_ttl`, which bounds how stale a read can be when another
//! process changed the customer.
//!
//! **Supervision.** Actors run under an actix `Supervisor`. A handler that meets an
//! inconsistency returns its error *and* stops the actor; the supervisor restarts it with an
//! empty cache, reloaded from the vault by the next message. A panic ends the actor for good
//! (actix does not restart after a panic); the registry sees the dead address and starts a new
//! one. Other customers' actors are never affected.
//!
//! **Idle stop.** After `actor_idle` without use (no message, no read of its slot) the registry's
//! sweeper sends [`RetireIfIdle`]; the actor then removes itself from the registry in its own turn
//! and is marked retired; a message that still reaches it through an old address is answered
//! with [`EngineError::Retired`] and re-sent by the engine to a fresh actor. It ends when the
//! last address is dropped, so memory stays bounded by the active customers.
//!
//! **Eviction.** When the registry holds more than `max_actors`, its sweeper sends [`Evict`] to
//! the least recently used actors; the actor retires exactly as on [`RetireIfIdle`] (in its own
//! turn, after its queued messages), unless its customer was used since it was picked.

use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;

use crate::crypto::Keyring;
use crate::error::EngineError;
use crate::settings::EngineSettings;
use crate::vault::customers::LoadCustomer;
use crate::vault::group_commit::BatchStats;
use crate::vault::records::CustomerSnapshot;
use crate::vault::Vault;
use registry::{CustomerKey, Evict, Registry, RetireIfIdle};

pub use crate::decide::{NextState, SavedCardChannel};
pub use crate::pipeline::Pipeline;
pub use messages::{
    DeleteCard, ListTokens, PayNewCard, PaySavedCard, Register, Reload, SetStatus, ShowOffer,
};

pub mod messages;
pub mod registry;

/// What every customer actor needs.
pub struct Deps {
    pub vault: Addr<Vault>,
    /// Reserve → acquirer → complete, through group commit.
    pub pipeline: Pipeline,
    pub batch_stats: Arc<BatchStats>,
    pub keyring: Arc<Keyring>,
    pub settings: EngineSettings,
}

/// Test hook for the supervision test: fail the way a broken handler does (`panic == false`:
/// stop → supervised restart; `panic == true`: a panic, which ends the actor for good). Only
/// with the `test-hooks` feature, which the test kit enables and the service never does.
#[cfg(feature = "test-hooks")]
pub struct InjectFailure {
    pub panic: bool,
}

#[cfg(feature = "test-hooks")]
impl Message for InjectFailure {
    type Result = ();
}

pub struct CustomerActor {
    key: CustomerKey,
    deps: Arc<Deps>,
    registry: Registry,
    retired: bool,
}

impl CustomerActor {
    pub fn new(key: CustomerKey, deps: Arc<Deps>, registry: Registry) -> CustomerActor {
        registry.actor_born();
        CustomerActor {
            key,
            deps,
            registry,
            retired: false,
        }
    }

    /// The cached customer if younger than `state_ttl` (`Some(None)`: known not to exist).
    fn fresh_state(&self) -> Option<Option<Arc<CustomerSnapshot>>> {
        self.registry
            .fresh_view(&self.key, self.deps.settings.state_ttl)
    }

    fn set_state(&self, ctx: &Context<Self>, snapshot: Option<Option<Arc<CustomerSnapshot>>>) {
        self.registry.publish(&self.key, &ctx.address(), snapshot);
    }
}

impl Actor for CustomerActor {
    type Context = Context<Self>;
}

impl Drop for CustomerActor {
    fn drop(&mut self) {
        self.registry.actor_gone();
    }
}

impl Handler<Evict> for CustomerActor {
    type Result = ();

    fn handle(&mut self, msg: Evict, ctx: &mut Context<Self>) {
        // In the actor's own turn, like RetireIfIdle: queued messages were answered first.
        if !self.retired
            && self
                .registry
                .retire_if_unused(&self.key, &ctx.address(), msg.seen_ms)
        {
            self.retired = true;
        }
    }
}

impl Handler<RetireIfIdle> for CustomerActor {
    type Result = ();

    fn handle(&mut self, _: RetireIfIdle, ctx: &mut Context<Self>) {
        // In the actor's own turn: every message queued before this one has been answered.
        if !self.retired
            && self.registry.retire_if_idle(
                &self.key,
                &ctx.address(),
                self.deps.settings.actor_idle,
            )
        {
            self.retired = true;
        }
    }
}

impl actix::Supervised for CustomerActor {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        // Forget everything cached: the next message reloads from the vault.
        self.set_state(ctx, None);
        tracing::warn!(
            union_id = self.key.union_id,
            "customer actor restarted by its supervisor"
        );
    }
}

/// Where a verb's snapshot comes from ([`CustomerActor::serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// The cached snapshot when fresh, else read from the vault.
    CachedOrRead,
    /// Read from the vault whatever the cache holds.
    Read,
    /// The cached snapshot when fresh, else none: the verb decides as for a customer not yet
    /// stored. Only for the new-card verbs (a registration, a payment with a new card), whose
    /// decision reads nothing but the flags, and whose writes read the flags again under the
    /// customer's lock: the reservation refuses a `fraud` customer before the acquirer is asked
    /// (R6), the completion saves the card only if the customer accepts saves (R6, R4). So a
    /// customer being created costs no read of an empty snapshot (issue 14), and the
    /// completion that saves the card returns the customer's snapshot for the cache.
    CachedOrUnread,
}

impl Load {
    /// A payment verb's mode: `reload` (the engine's second attempt, [`messages::Reload`])
    /// reads; otherwise `first`.
    pub(crate) fn payment(reload: bool, first: Load) -> Load {
        if reload {
            Load::Read
        } else {
            first
        }
    }
}

impl CustomerActor {
    /// The frame of every customer verb: answers `Retired` once retired; otherwise takes the
    /// customer's snapshot as `load` says, runs `work` on it with the mailbox closed
    /// ([`AtomicResponse`]), then publishes what was loaded and applies the [`NextState`]
    /// `work` returns before the reply goes out.
    fn serve<R, F, Fut>(&self, load: Load, work: F) -> AtomicResponse<Self, Result<R, EngineError>>
    where
        R: 'static,
        F: FnOnce(Arc<Deps>, Option<Arc<CustomerSnapshot>>) -> Fut + 'static,
        Fut: Future<Output = (Result<R, EngineError>, NextState)> + 'static,
    {
        if self.retired {
            return AtomicResponse::new(Box::pin(fut::ready(Err(EngineError::Retired))));
        }
        let deps = self.deps.clone();
        let cached = match load {
            Load::Read => None,
            Load::CachedOrRead => self.fresh_state(),
            // Not cached: decided as a customer not stored, nothing read or published.
            Load::CachedOrUnread => Some(self.fresh_state().flatten()),
        };
        let key = self.key.clone();
        let run = async move {
            let (snapshot, loaded) = match cached {
                Some(s) => (s, false),
                None => {
                    let loaded = deps
                        .vault
                        .send(LoadCustomer {
                            union_id: key.union_id,
                            customer_number: key.customer_number.to_string(),
                        })
                        .await;
                    match loaded {
                        Ok(Ok(s)) => (s.map(Arc::new), true),
                        Ok(Err(e)) => {
                            return (Err(EngineError::from(e)), NextState::Invalidate, None)
                        }
                        Err(e) => return (Err(EngineError::from(e)), NextState::Invalidate, None),
                    }
                }
            };
            let (result, next) = work(deps, snapshot.clone()).await;
            (result, next, loaded.then_some(snapshot))
        };
        AtomicResponse::new(Box::pin(run.into_actor(self).map(
            |(result, next, loaded), act, ctx| {
                if let Some(snapshot) = loaded {
                    act.set_state(ctx, Some(snapshot));
                }
                match next {
                    NextState::Keep => {}
                    NextState::Replace(s) => act.set_state(ctx, Some(s)),
                    NextState::Invalidate => act.set_state(ctx, None),
                    NextState::Restart => ctx.stop(),
                }
                result
            },
        )))
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<InjectFailure> for CustomerActor {
    type Result = ();

    fn handle(&mut self, msg: InjectFailure, ctx: &mut Context<Self>) {
        if msg.panic {
            panic!("injected failure (test hook)");
        }
        ctx.stop();
    }
}
