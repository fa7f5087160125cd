//! The registry of customer actors: finds or starts the one actor of a (union, customer number).
//!
//! Not a global bottleneck: the map is split into shards, each behind its own short mutex (held
//! only to look up or insert an address, never across an await), and actors are spread over a
//! pool of arbiters (threads), chosen by the key's hash, so no single thread carries every
//! customer. An address whose actor died (a panic) is replaced on the next lookup.
//!
//! **The cached customer lives here**, beside the actor's address: the actor publishes what it
//! loaded or committed into its slot, and read-only requests (offer, token list) read
//! a fresh view straight from the slot, on the requesting thread, without queueing behind the
//! actor or crossing to its arbiter thread. Writes still go through the actor, which publishes
//! before it replies, so a reader that saw a write's reply sees its effect.
//!
//! **Idle actors** are found by one sweeper thread per registry, not by a timer in every actor
//! (a timer per actor cost a few hundred bytes each): each slot records when it was last used
//! (a lookup or a read), and every `actor_idle / 4` the sweeper asks the actors idle longer than
//! `actor_idle` to retire ([`RetireIfIdle`]). The actor retires in its own turn, after every
//! message already queued, and only if its slot is still idle then (see
//! [`Registry::retire_if_idle`]), so a customer never has two live actors in one process.
//!
//! **A cap on cached actors** (`max_actors`, security issue 12, finding 10): a flood of distinct
//! customers must not grow memory until the idle sweep. When an insert takes the registry past
//! `max_actors`, it wakes the sweeper, which picks the least recently used slots (oldest
//! `last_seen_ms` over all shards) down to `max_actors - max_actors / 16` and sends each an
//! [`Evict`] carrying the `last_seen_ms` it saw. Eviction is the idle retirement with another
//! test: the actor retires in its own turn, after every message already queued, and only if its
//! slot was not used since it was picked ([`Registry::retire_if_unused`]); a customer used in
//! between stays. So the invariants of idle retirement hold (per-customer order, never two live
//! actors for one customer), and the cap is soft: between the insert that crosses it and the
//! victims' turns, new customers keep arriving. That lag is the slack the tests and
//! docs/security/registry.md state. When the sweeper itself lags (its thread starved while
//! requests keep starting actors) by more than an eighth of the cap, the inserting request picks
//! the victims itself.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::{Addr, ArbiterHandle, Supervisor};

use super::{CustomerActor, Deps};
use crate::vault::records::CustomerSnapshot;

/// A customer: the union (namespace of customer numbers) and the number (already validated, R1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerKey {
    pub union_id: i64,
    pub customer_number: Arc<str>,
}

/// One customer's entry: its actor and what the actor last loaded or committed. Kept small
/// (times as wrapping milliseconds of the registry's clock): one exists per cached customer.
struct Slot {
    addr: Addr<CustomerActor>,
    /// The cached customer (`None`: known not to exist), valid when `loaded_ms != NOT_LOADED`.
    snapshot: Option<Arc<CustomerSnapshot>>,
    /// When `snapshot` was loaded or committed.
    loaded_ms: u32,
    /// Last lookup or read of this customer.
    last_seen_ms: u32,
    /// An [`Evict`] was sent and not yet answered (cleared by any use: the eviction then fails).
    evicting: bool,
}

/// `Slot::loaded_ms` of a slot with nothing cached.
const NOT_LOADED: u32 = u32::MAX;

/// How far past `max_actors` the sweeper may lag before an insert evicts by itself: a
/// `1 / LAG_FRACTION` share of the cap. Measured (security_registry, cap 256, six busy loops
/// beside it on 2 cores): with the sweeper alone, one run in three peaked at 416 live actors.
const LAG_FRACTION: usize = 8;

/// Milliseconds from `then` to `now` on the registry's wrapping clock (exact below 49 days).
fn since(now: u32, then: u32) -> u32 {
    now.wrapping_sub(then)
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Sent by the sweeper to an actor whose slot has been idle for `actor_idle`.
pub struct RetireIfIdle;

impl actix::Message for RetireIfIdle {
    type Result = ();
}

/// Sent by the sweeper to the least recently used actors when the registry is over
/// `max_actors`: retire unless used since `seen_ms` (the slot's `last_seen_ms` when picked).
pub struct Evict {
    pub seen_ms: u32,
}

impl actix::Message for Evict {
    type Result = ();
}

type Shard = Mutex<HashMap<CustomerKey, Slot>>;

struct Inner {
    shards: Vec<Shard>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    deps: Weak<Deps>,
    /// Zero of the slots' millisecond clock.
    epoch: Instant,
    /// Most slots before the sweeper evicts the least recently used.
    max_actors: usize,
    /// Slots in all shards (kept beside the maps so an insert need not lock every shard).
    slots: AtomicUsize,
    /// Customer actors alive in this process, registered or retiring (a [`CustomerActor`]
    /// counts from its creation to its drop).
    live_actors: AtomicUsize,
    /// Wakes the sweeper for an eviction pass (capacity 1: one pending wake is enough).
    wake: SyncSender<()>,
}

/// Cheap to clone; all clones share the same actors.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// A registry whose actors retire after `idle` without use (a sweeper thread checks every
    /// `idle / 4`, at least every 50 ms; it ends with the registry) and that keeps at most about
    /// `max_actors` of them (least recently used evicted first; see the module header).
    pub fn new(
        shards: usize,
        arbiters: Vec<ArbiterHandle>,
        deps: Weak<Deps>,
        idle: Duration,
        max_actors: usize,
    ) -> Registry {
        let (wake, woken) = sync_channel::<()>(1);
        let registry = Registry {
            inner: Arc::new(Inner {
                shards: (0..shards.max(1))
                    .map(|_| Mutex::new(HashMap::new()))
                    .collect(),
                arbiters,
                hasher: Default::default(),
                deps,
                epoch: Instant::now(),
                max_actors: max_actors.max(1),
                slots: AtomicUsize::new(0),
                live_actors: AtomicUsize::new(0),
                wake,
            }),
        };
        let weak = Arc::downgrade(&registry.inner);
        let tick = (idle / 4).max(Duration::from_millis(50));
        let spawned = std::thread::Builder::new()
            .name("oneclick-sweeper".into())
            .spawn(move || {
                let mut last_idle_sweep = Instant::now();
                loop {
                    let woken = woken.recv_timeout(tick);
                    if woken == Err(RecvTimeoutError::Disconnected) {
                        return;
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    let registry = Registry { inner };
                    registry.evict_over_cap();
                    if last_idle_sweep.elapsed() >= tick {
                        last_idle_sweep = Instant::now();
                        registry.sweep(idle);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the idle-actor sweeper; actors stay cached");
        }
        registry
    }

    /// Asks every actor idle for `idle` to retire (a message each), and drops the slots of
    /// actors that died (a panic) and were not looked up since. The shard lock is held only
    /// while scanning one shard.
    fn sweep(&self, idle: Duration) {
        let idle = millis(idle);
        for shard in &self.inner.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.now_ms();
            shard.retain(|_, slot| {
                if !slot.addr.connected() {
                    self.inner.slots.fetch_sub(1, Ordering::Relaxed);
                    return false;
                }
                if since(now, slot.last_seen_ms) >= idle {
                    slot.addr.do_send(RetireIfIdle);
                }
                true
            });
        }
    }

    /// When over `max_actors`: picks the least recently used slots not already being evicted,
    /// down to `max_actors - max_actors / 16`, and sends each an [`Evict`]. Shard locks are held
    /// one at a time, while scanning or marking one shard.
    fn evict_over_cap(&self) {
        let max = self.inner.max_actors;
        let slots = self.inner.slots.load(Ordering::Relaxed);
        if slots <= max {
            return;
        }
        let target = max - max / 16;
        let now = self.now_ms();
        // (age, shard, key) of every slot not already being evicted.
        let mut candidates: Vec<(u32, usize, CustomerKey)> = Vec::with_capacity(slots);
        let mut evicting = 0usize;
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (key, slot) in shard.iter() {
                if slot.evicting {
                    evicting += 1;
                } else {
                    candidates.push((since(now, slot.last_seen_ms), i, key.clone()));
                }
            }
        }
        let wanted = (slots - target)
            .saturating_sub(evicting)
            .min(candidates.len());
        if wanted == 0 {
            return;
        }
        if wanted < candidates.len() {
            // The `wanted` oldest first (largest age).
            candidates.select_nth_unstable_by(wanted - 1, |a, b| b.0.cmp(&a.0));
            candidates.truncate(wanted);
        }
        candidates.sort_unstable_by_key(|c| c.1);
        let mut at = 0;
        while at < candidates.len() {
            let i = candidates[at].1;
            let mut shard = self.inner.shards[i]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            while at < candidates.len() && candidates[at].1 == i {
                if let Some(slot) = shard.get_mut(&candidates[at].2) {
                    slot.evicting = true;
                    slot.addr.do_send(Evict {
                        seen_ms: slot.last_seen_ms,
                    });
                }
                at += 1;
            }
        }
    }

    /// Removes `key` if it still maps to `addr` and was not used since `seen_ms` (an [`Evict`]);
    /// `true` if removed (the actor then retires).
    pub fn retire_if_unused(
        &self,
        key: &CustomerKey,
        addr: &Addr<CustomerActor>,
        seen_ms: u32,
    ) -> bool {
        let mut shard = self.shard(self.hash(key));
        match shard.get_mut(key) {
            Some(s) if &s.addr == addr && s.last_seen_ms != seen_ms => {
                // Used since it was picked: it stays, and another pass picks someone else.
                s.evicting = false;
                drop(shard);
                if self.inner.slots.load(Ordering::Relaxed) > self.inner.max_actors {
                    let _ = self.inner.wake.try_send(());
                }
                false
            }
            Some(s) if &s.addr == addr => {
                shard.remove(key);
                self.inner.slots.fetch_sub(1, Ordering::Relaxed);
                true
            }
            // Not registered any more (replaced after a panic): retire.
            _ => true,
        }
    }

    /// Removes `key` if it still maps to `addr` and has been idle for `idle`; `true` if removed
    /// (the actor then retires: it answers any later message with `Retired`).
    pub fn retire_if_idle(
        &self,
        key: &CustomerKey,
        addr: &Addr<CustomerActor>,
        idle: Duration,
    ) -> bool {
        let mut shard = self.shard(self.hash(key));
        let now = self.now_ms();
        match shard.get(key) {
            Some(s) if &s.addr == addr && since(now, s.last_seen_ms) < millis(idle) => false,
            Some(s) if &s.addr == addr => {
                shard.remove(key);
                self.inner.slots.fetch_sub(1, Ordering::Relaxed);
                true
            }
            // Not registered any more (replaced after a panic): retire.
            _ => true,
        }
    }

    /// The slots' clock: milliseconds since the registry started, wrapping after 49 days.
    fn now_ms(&self) -> u32 {
        // Truncation is the wrap.
        self.inner.epoch.elapsed().as_millis() as u32
    }

    fn hash(&self, key: &CustomerKey) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, HashMap<CustomerKey, Slot>> {
        let shard = &self.inner.shards[(hash % self.inner.shards.len() as u64) as usize];
        // A poisoned shard only means a thread panicked while holding it; the map is still valid.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live actor of `key`, started if needed. `None` only while the engine shuts down.
    pub fn get_or_start(&self, key: &CustomerKey) -> Option<Addr<CustomerActor>> {
        let hash = self.hash(key);
        let mut shard = self.shard(hash);
        if let Some(slot) = shard.get_mut(key) {
            if slot.addr.connected() {
                slot.last_seen_ms = self.now_ms();
                slot.evicting = false;
                return Some(slot.addr.clone());
            }
        }
        let deps = self.inner.deps.upgrade()?;
        let arbiter =
            &self.inner.arbiters[((hash >> 32) % self.inner.arbiters.len() as u64) as usize];
        let (k, registry) = (key.clone(), self.clone());
        let addr =
            Supervisor::start_in_arbiter(arbiter, move |_| CustomerActor::new(k, deps, registry));
        let replaced = shard.insert(
            key.clone(),
            Slot {
                addr: addr.clone(),
                snapshot: None,
                loaded_ms: NOT_LOADED,
                last_seen_ms: self.now_ms(),
                evicting: false,
            },
        );
        drop(shard);
        if replaced.is_none() {
            let slots = self.inner.slots.fetch_add(1, Ordering::Relaxed) + 1;
            let max = self.inner.max_actors;
            if slots > max + max / LAG_FRACTION {
                // The sweeper lags behind the inserts (a starved machine: its thread is not
                // scheduled while requests keep starting actors): this insert picks the victims
                // itself, so a flood cannot outrun eviction.
                self.evict_over_cap();
            } else if slots > max {
                // Full: a wake is already pending, which is as good.
                let _ = self.inner.wake.try_send(());
            }
        }
        Some(addr)
    }

    /// The customer as its live actor last published it, if younger than `ttl` (`Some(None)`:
    /// known not to exist).
    pub fn fresh_view(
        &self,
        key: &CustomerKey,
        ttl: Duration,
    ) -> Option<Option<Arc<CustomerSnapshot>>> {
        let mut shard = self.shard(self.hash(key));
        let slot = shard.get_mut(key)?;
        let now = self.now_ms();
        if slot.loaded_ms == NOT_LOADED
            || since(now, slot.loaded_ms) > millis(ttl)
            || !slot.addr.connected()
        {
            return None;
        }
        slot.last_seen_ms = now;
        slot.evicting = false;
        Some(slot.snapshot.clone())
    }

    /// Sets what `key`'s actor loaded or committed (`None`: forget it), if `addr` is still its
    /// actor.
    pub fn publish(
        &self,
        key: &CustomerKey,
        addr: &Addr<CustomerActor>,
        view: Option<Option<Arc<CustomerSnapshot>>>,
    ) {
        let mut shard = self.shard(self.hash(key));
        let now = self.now_ms();
        if let Some(slot) = shard.get_mut(key).filter(|s| &s.addr == addr) {
            match view {
                Some(snapshot) => {
                    slot.snapshot = snapshot;
                    // A real time equal to the sentinel is a millisecond early instead.
                    slot.loaded_ms = if now == NOT_LOADED { now - 1 } else { now };
                }
                None => {
                    slot.snapshot = None;
                    slot.loaded_ms = NOT_LOADED;
                }
            }
        }
    }

    /// Number of registered actors (a metric; takes each shard lock briefly).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured cap on cached actors.
    pub fn max_actors(&self) -> usize {
        self.inner.max_actors
    }

    /// Customer actors alive in this process: registered, or retired and not yet dropped.
    pub fn live_actors(&self) -> usize {
        self.inner.live_actors.load(Ordering::Relaxed)
    }

    /// A customer actor was created (called by [`CustomerActor::new`]).
    pub(crate) fn actor_born(&self) {
        self.inner.live_actors.fetch_add(1, Ordering::Relaxed);
    }

    /// A customer actor was dropped.
    pub(crate) fn actor_gone(&self) {
        self.inner.live_actors.fetch_sub(1, Ordering::Relaxed);
    }

    /// The registered actor of `key`, if any (test hook).
    pub fn peek(&self, key: &CustomerKey) -> Option<Addr<CustomerActor>> {
        self.shard(self.hash(key)).get(key).map(|s| s.addr.clone())
    }
}
