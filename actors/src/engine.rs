//! The engine facade: the commands of the One Click service, usable in-process. Each command is
//! authenticated and validated here (fields into domain types, merchant, signature), then routed:
//! customer commands as one typed message each to the customer's actor ([`crate::customer`]:
//! `PayNewCard`, `Register`, `PaySavedCard`, `DeleteCard`, `SetStatus`, `ShowOffer`,
//! `ListTokens`), payments without a customer straight through the pipeline
//! ([`crate::pipeline`]), read-only merchant views straight to the vault. No rule is decided
//! here: the decisions are [`crate::decide`]'s. The NATS layer only translates messages into
//! these calls.
//!
//! Errors: [`EngineError`] maps every failure onto one public [`Fault`]; causes are logged, never
//! card data.

pub mod merchants;
pub mod payment;
pub mod requests;

use std::sync::Arc;

use actix::{Addr, Arbiter, ArbiterHandle, Handler, MailboxError, Message};

use crate::acquirer::Acquirer;
use crate::crypto::Keyring;
use crate::customer::registry::{CustomerKey, Registry};
use crate::customer::{self, CustomerActor, Deps, Pipeline, Reload};
use crate::decide;
use crate::domain::status::StatusChange;
use crate::domain::{CommandKind, CustomerNumber, Token};
use crate::error::flatten;
use crate::fault::Fault;
use crate::reply::*;
use crate::vault::audit::{AuditAction, Record};
use crate::vault::customers::{CommandKey, ListCustomers};
use crate::vault::group_commit::{BatchStats, GroupCommit};
use crate::vault::payments::FindOrder;
use crate::vault::records::{CustomerSnapshot, MerchantRecord};
use crate::vault::{Pool, Vault};
use requests::*;

pub use crate::error::{EngineError, EngineResult};
/// The replies, under the path the service has always used.
pub use crate::reply as replies;
pub use crate::settings::EngineSettings;

/// The audit detail of a customer change: the status asked for and the durable command id (R16).
fn audit_detail(command_id: &Option<String>, status: Option<&str>) -> serde_json::Value {
    let mut detail = serde_json::Map::new();
    if let Some(status) = status {
        detail.insert("status".into(), status.into());
    }
    if let Some(id) = command_id {
        detail.insert("command_id".into(), id.as_str().into());
    }
    serde_json::Value::Object(detail)
}

/// A personal-account user signed in ([`Engine::authenticate_account`]).
#[derive(Debug, Clone)]
pub struct AccountSignIn {
    pub merchant: Arc<MerchantRecord>,
    /// The user is enrolled in TOTP: changes need a fresh code.
    pub totp: bool,
}

/// The One Click engine. Cheap to clone. Must be started inside an actix `System`.
#[derive(Clone)]
pub struct Engine {
    deps: Arc<Deps>,
    registry: Registry,
    merchants: merchants::MerchantCache,
    pool: Pool,
    _arbiters: Arc<Vec<Arbiter>>,
}

impl Engine {
    /// Starts the vault workers, the actor threads and the registry.
    pub fn start(
        settings: EngineSettings,
        pool: Pool,
        keyring: Arc<Keyring>,
        acquirer: Arc<dyn Acquirer>,
    ) -> Engine {
        let vault = Vault::start(pool.clone(), keyring.clone(), settings.vault_workers);
        let batch_stats = Arc::new(BatchStats::default());
        let writer = GroupCommit::start(
            pool.clone(),
            keyring.clone(),
            settings.group_commit_writers,
            settings.group_commit_max_batch,
            batch_stats.clone(),
        );
        let arbiters: Vec<Arbiter> = (0..settings.arbiters.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let handles: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
        let deps = Arc::new(Deps {
            vault,
            pipeline: Pipeline {
                writer,
                acquirer,
                in_doubt_after: settings.in_doubt_after,
            },
            batch_stats,
            keyring,
            settings: settings.clone(),
        });
        let registry = Registry::new(
            settings.registry_shards,
            handles,
            Arc::downgrade(&deps),
            settings.actor_idle,
            settings.max_actors,
        );
        let merchants = merchants::MerchantCache::new(
            deps.vault.clone(),
            settings.merchant_cache,
            settings.credential_cache,
            settings.login.clone(),
        );
        Engine {
            deps,
            registry,
            merchants,
            pool,
            _arbiters: Arc::new(arbiters),
        }
    }

    pub fn vault(&self) -> &Addr<Vault> {
        &self.deps.vault
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.deps.keyring
    }

    /// Group-commit counters: (transactions, payment steps, failed batches re-run alone).
    pub fn batch_stats(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.deps.batch_stats;
        (
            s.batches.load(Relaxed),
            s.steps.load(Relaxed),
            s.failed_batches.load(Relaxed),
        )
    }

    /// Payment steps the group commit ran in a statement for several steps at once
    /// (PostgreSQL's set-based reservations and claims, `vault::batch`), whether that statement
    /// answered them or sent them on to the general path.
    pub fn steps_together(&self) -> u64 {
        self.deps
            .batch_stats
            .together
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Vault pool use: (open connections, idle connections).
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }

    /// Number of customer actors alive in the registry.
    pub fn active_customers(&self) -> usize {
        self.registry.len()
    }

    /// Customer actors alive in the process: registered, or retired/evicted and not yet dropped.
    pub fn live_actors(&self) -> usize {
        self.registry.live_actors()
    }

    /// Sends `msg` to the customer's actor, started if needed; re-sent to a fresh actor when
    /// the one found had retired meanwhile (at most three tries).
    async fn ask<M, R>(&self, key: &CustomerKey, msg: M) -> EngineResult<R>
    where
        M: Message<Result = EngineResult<R>> + Clone + Send + 'static,
        R: Send + 'static,
        CustomerActor: Handler<M>,
    {
        for attempt in 0..3 {
            let addr = self
                .registry
                .get_or_start(key)
                .ok_or(EngineError::Fault(Fault::ShuttingDown))?;
            match addr.send(msg.clone()).await {
                Ok(Err(EngineError::Retired)) | Err(MailboxError::Closed) if attempt < 2 => {
                    continue
                }
                Ok(result) => return result,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Retired)
    }

    /// [`Self::ask`] for a payment: when the cached snapshot refused the card (4/1, expired) it
    /// may predate a card saved or renewed by another process, so the vault is asked before
    /// refusing (nothing was stored by the first attempt).
    pub(crate) async fn pay_in_actor<M>(
        &self,
        key: &CustomerKey,
        msg: M,
    ) -> EngineResult<PaymentResult>
    where
        M: Message<Result = EngineResult<PaymentResult>> + Reload + Clone + Send + 'static,
        CustomerActor: Handler<M>,
    {
        match self.ask(key, msg.clone()).await {
            Err(e) if matches!(e.fault(), Fault::TokenNotFound | Fault::CardExpired) => {
                self.ask(key, msg.reloading()).await
            }
            other => other,
        }
    }

    /// The customer as its actor last loaded or committed it, when that is younger than
    /// `state_ttl`: read-only requests answer from it on the calling thread, without a message to
    /// the actor (`Some(None)`: known not to exist).
    fn cached(&self, key: &CustomerKey) -> Option<Option<Arc<CustomerSnapshot>>> {
        self.registry.fresh_view(key, self.deps.settings.state_ttl)
    }

    pub(crate) fn customer_key(merchant: &MerchantRecord, number: &CustomerNumber) -> CustomerKey {
        CustomerKey {
            union_id: merchant.union_id,
            customer_number: Arc::from(number.as_str()),
        }
    }

    /// Checks a web-service user's login and password (argon2, cached once verified) for a
    /// caller at `source`: throttled, locked after repeated failures and bounded in argon2
    /// concurrency ([`merchants`]). Faults: 2/2, 2/5 `LoginLocked`, 2/6 `LoginThrottled`.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        source: &merchants::LoginSource,
    ) -> EngineResult<Arc<MerchantRecord>> {
        self.merchants
            .authenticate_with(&self.deps.keyring, credentials, source)
            .await
    }

    /// Signs in a personal-account user (issue 15): the user's own argon2 hash
    /// (`account_users`), checked exactly as a web-service login is (throttle, lockout, argon2
    /// bound, no enumeration); `source` is [`merchants::LoginSource::Account`]. A user enrolled in
    /// TOTP also needs `code`, the current one-time code (±1 step), accepted once; a wrong or
    /// missing code is a failed login in the same lockout as a wrong password.
    pub async fn authenticate_account(
        &self,
        credentials: &Credentials,
        code: Option<&SecretString>,
        source: &merchants::LoginSource,
    ) -> EngineResult<AccountSignIn> {
        merchants::check_lengths(credentials)?;
        let merchant = self.merchant(credentials.merchant_id).await?;
        let user = flatten(
            self.deps
                .vault
                .send(crate::vault::accounts::LoadAccountUser {
                    merchant_id: merchant.id,
                    login: credentials.login.clone(),
                })
                .await,
        )?;
        let totp = user.as_ref().is_some_and(|u| u.totp);
        let check = totp.then(|| {
            Self::code_check(
                merchant.id,
                &credentials.login,
                code.cloned().unwrap_or_default(),
            )
        });
        self.merchants
            .check_sign_in(
                &self.deps.keyring,
                credentials,
                user.map(|u| u.password_hash.clone()),
                check,
                source,
            )
            .await?;
        Ok(AccountSignIn { merchant, totp })
    }

    /// A signed-in personal-account user's confirmation of a change (Deny, card deletion): when
    /// the user is enrolled in TOTP, `code` must be a fresh one-time code (accepted once); a
    /// wrong or missing one refuses the change and counts as a failed login of (merchant, login,
    /// `source`). A user without a second factor passes as before.
    pub async fn confirm_account_change(
        &self,
        merchant_id: i64,
        login: &str,
        code: Option<&SecretString>,
        source: &merchants::LoginSource,
    ) -> EngineResult<()> {
        // Users without a second factor change as before: no code, no throttle token spent.
        let user = flatten(
            self.deps
                .vault
                .send(crate::vault::accounts::LoadAccountUser {
                    merchant_id,
                    login: login.to_string(),
                })
                .await,
        )?;
        if !user.is_some_and(|u| u.totp) {
            return Ok(());
        }
        let check = Self::code_check(merchant_id, login, code.cloned().unwrap_or_default());
        self.merchants.confirm_code(check, source).await
    }

    fn code_check(
        merchant_id: i64,
        login: &str,
        code: SecretString,
    ) -> crate::vault::accounts::AcceptTotpCode {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        crate::vault::accounts::AcceptTotpCode {
            merchant_id,
            login: login.to_string(),
            code,
            unix_secs,
        }
    }

    /// Counters of the login defences (argon2 in flight and peak, lockouts, throttled).
    pub fn login_counters(&self) -> merchants::LoginCounters {
        self.merchants.login_counters()
    }

    /// A merchant by id (cached), or `UnknownMerchant`.
    pub async fn merchant(&self, merchant_id: i64) -> EngineResult<Arc<MerchantRecord>> {
        self.merchants.get(merchant_id).await
    }

    /// Forgets cached merchant settings (after an admin change in this process).
    pub fn invalidate_merchant(&self, merchant_id: i64) {
        self.merchants.invalidate(merchant_id);
    }

    // ---- payment page (gateway) --------------------------------------------------------------

    /// R4: what to offer on the payment page. Read-only.
    #[tracing::instrument(skip_all, fields(merchant_id = req.order.merchant_id, order_number = ?req.order.order_number, kind = "offer"))]
    pub async fn offer(&self, req: OfferRequest) -> EngineResult<Offer> {
        let merchant = self.merchant(req.order.merchant_id).await?;
        let order =
            payment::validate_order(&merchant, &req.order, payment::OrderPolicy::PaymentPage)?;
        let number = order.customer.clone().ok_or(Fault::MissingField)?;
        let key = Self::customer_key(&merchant, &number);
        if let Some(snapshot) = self.cached(&key) {
            return Ok(decide::offer(
                &merchant,
                snapshot.as_deref(),
                merchant.today(),
            ));
        }
        self.ask(&key, customer::ShowOffer { merchant }).await
    }

    /// Pays with a new card (financial transaction), saving it when agreed (R4, R5, R11), or
    /// starts a recurring agreement (R15).
    #[tracing::instrument(skip_all, fields(merchant_id = req.order.merchant_id, order_number = ?req.order.order_number, kind = "pay_new_card"))]
    pub async fn pay_new_card(&self, req: PayNewCardRequest) -> EngineResult<PaymentResult> {
        let merchant = self.merchant(req.order.merchant_id).await?;
        payment::pay_new_card(self, merchant, req).await
    }

    /// Registration transaction (R13): verifies the card and saves it on success.
    #[tracing::instrument(skip_all, fields(merchant_id = req.order.merchant_id, order_number = ?req.order.order_number, kind = "registration"))]
    pub async fn register(&self, req: RegisterRequest) -> EngineResult<PaymentResult> {
        let merchant = self.merchant(req.order.merchant_id).await?;
        payment::register(self, merchant, req).await
    }

    /// Pays with a saved card on the payment page (R8).
    #[tracing::instrument(skip_all, fields(merchant_id = req.order.merchant_id, order_number = ?req.order.order_number, kind = "saved_card"))]
    pub async fn pay_saved_card(&self, req: PaySavedCardRequest) -> EngineResult<PaymentResult> {
        let merchant = self.merchant(req.order.merchant_id).await?;
        payment::pay_saved_card(self, merchant, req).await
    }

    /// Token Pay (R14). The caller has authenticated the merchant.
    #[tracing::instrument(skip_all, fields(merchant_id = req.order.merchant_id, order_number = ?req.order.order_number, kind = "token_pay"))]
    pub async fn token_pay(&self, req: TokenPayRequest) -> EngineResult<PaymentResult> {
        let merchant = self.merchant(req.order.merchant_id).await?;
        payment::token_pay(self, merchant, req).await
    }

    /// A merchant-initiated charge on a recurring agreement (R15).
    #[tracing::instrument(skip_all, fields(merchant_id = req.merchant_id, order_number = ?req.order_number, kind = "recurring_charge"))]
    pub async fn recurring_charge(
        &self,
        req: RecurringChargeRequest,
    ) -> EngineResult<PaymentResult> {
        let merchant = self.merchant(req.merchant_id).await?;
        payment::recurring_charge(self, merchant, req).await
    }

    // ---- cards and customers ------------------------------------------------------------------

    /// Deletes a card (R10), by the customer on the payment page or by the merchant.
    #[tracing::instrument(skip_all, fields(merchant_id = req.merchant_id, command_id = ?req.command_id, kind = "delete_card"))]
    pub async fn delete_card(&self, req: DeleteCardRequest) -> EngineResult<TokenRemoved> {
        let merchant = self.merchant(req.merchant_id).await?;
        let number = CustomerNumber::parse(&req.customer_number)?;
        // A malformed token is a field fault (3/9); a well-formed one this customer does not
        // have is 4/1 whoever owns it (R17).
        let token = Token::parse(&req.token)?;
        let command = match &req.command_id {
            Some(id) => Some(self.command_key(
                &merchant,
                id,
                CommandKind::DeleteCard,
                &[number.as_str().as_bytes(), token.as_str().as_bytes()],
            )?),
            None => None,
        };
        let audit = Record::new(req.actor.clone(), AuditAction::CardDeleted)
            .merchant(merchant.id)
            .customer(number.as_str())
            .token(token.as_str())
            .detail(audit_detail(&req.command_id, None));
        let key = Self::customer_key(&merchant, &number);
        self.ask(
            &key,
            customer::DeleteCard {
                token,
                command,
                audit,
            },
        )
        .await
    }

    /// Sets or clears a customer's flags (R6).
    #[tracing::instrument(skip_all, fields(merchant_id = req.merchant_id, command_id = ?req.command_id, kind = "set_status"))]
    pub async fn set_status(&self, req: SetStatusRequest) -> EngineResult<StatusChanged> {
        let merchant = self.merchant(req.merchant_id).await?;
        let number = CustomerNumber::parse(&req.customer_number)?;
        let change = StatusChange::parse(&req.status)?;
        let command = match &req.command_id {
            Some(id) => Some(self.command_key(
                &merchant,
                id,
                CommandKind::SetStatus,
                &[number.as_str().as_bytes(), change.as_str().as_bytes()],
            )?),
            None => None,
        };
        let audit = Record::new(req.actor.clone(), AuditAction::CustomerStatusChanged)
            .merchant(merchant.id)
            .customer(number.as_str())
            .detail(audit_detail(&req.command_id, Some(req.status.as_str())));
        let key = Self::customer_key(&merchant, &number);
        self.ask(
            &key,
            customer::SetStatus {
                change,
                command,
                audit,
            },
        )
        .await
    }

    /// Merchant token list (docs/rules.md §4): every card not deleted, `active: false` when unusable.
    #[tracing::instrument(skip_all, fields(merchant_id = req.merchant_id, kind = "token_list"))]
    pub async fn token_list(&self, req: TokenListRequest) -> EngineResult<Vec<TokenListEntry>> {
        let merchant = self.merchant(req.merchant_id).await?;
        let number = CustomerNumber::parse(&req.customer_number)?;
        let key = Self::customer_key(&merchant, &number);
        if let Some(snapshot) = self.cached(&key) {
            return Ok(decide::token_list(
                &merchant,
                snapshot.as_deref(),
                merchant.today(),
            ));
        }
        self.ask(&key, customer::ListTokens { merchant }).await
    }

    /// The personal-account view: customers of the merchant's union and all their cards.
    #[tracing::instrument(skip_all, fields(merchant_id = req.merchant_id, kind = "list_customers"))]
    pub async fn list_customers(&self, req: ListCustomersRequest) -> EngineResult<CustomerPage> {
        let merchant = self.merchant(req.merchant_id).await?;
        let search = req
            .search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| CustomerNumber::parse(s).map(|n| n.as_str().to_string()))
            .transpose()?;
        let limit = if req.limit <= 0 {
            50
        } else {
            req.limit.min(500)
        };
        let (total, entries) = flatten(
            self.deps
                .vault
                .send(ListCustomers {
                    union_id: merchant.union_id,
                    search,
                    offset: req.offset.max(0),
                    limit,
                    after: req.after,
                })
                .await,
        )?;
        let today = merchant.today();
        Ok(CustomerPage {
            total,
            customers: entries
                .into_iter()
                .map(|e| decide::account_customer(e, today))
                .collect(),
        })
    }

    /// The state of one of the merchant's orders.
    #[tracing::instrument(skip_all, fields(merchant_id = req.merchant_id, order_number = ?req.order_number, kind = "order_state"))]
    pub async fn order_state(&self, req: OrderStateRequest) -> EngineResult<OrderStatus> {
        let merchant = self.merchant(req.merchant_id).await?;
        let number = crate::domain::OrderNumber::parse(&req.order_number)?;
        let found = flatten(
            self.deps
                .vault
                .send(FindOrder {
                    merchant_id: merchant.id,
                    order_number: number.as_str().to_string(),
                })
                .await,
        )?;
        let (order, card) = found.ok_or(Fault::OrderNotFound)?;
        Ok(decide::order_status(order, card))
    }

    /// Test hook for the supervision test: makes the customer's actor fail (`test-hooks`
    /// feature only).
    #[cfg(feature = "test-hooks")]
    pub async fn inject_customer_failure(
        &self,
        merchant_id: i64,
        customer_number: &str,
        panic: bool,
    ) -> EngineResult<()> {
        let merchant = self.merchant(merchant_id).await?;
        let key = Self::customer_key(&merchant, &CustomerNumber::parse(customer_number)?);
        let addr = self
            .registry
            .get_or_start(&key)
            .ok_or(Fault::ShuttingDown)?;
        let _ = addr.send(crate::customer::InjectFailure { panic }).await;
        Ok(())
    }

    fn command_key(
        &self,
        merchant: &MerchantRecord,
        command_id: &str,
        kind: CommandKind,
        parts: &[&[u8]],
    ) -> EngineResult<CommandKey> {
        if command_id.is_empty()
            || command_id.len() > 64
            || !command_id.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(Fault::InvalidCommandId.into());
        }
        let mut all: Vec<&[u8]> = vec![kind.as_str().as_bytes()];
        all.extend_from_slice(parts);
        Ok(CommandKey {
            merchant_id: merchant.id,
            command_id: command_id.to_string(),
            kind,
            digest: self.deps.keyring.request_digest(&all),
        })
    }
}
