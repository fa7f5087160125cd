//! The registry of customer actors: finds or starts the one actor of a (union, customer number).
//!
//! Not a global bottleneck: the map is split into shards, each behind its own short mutex (held
//! only to look up or insert an address, never across an await), and actors are spread over a
//! pool of arbiters (threads), chosen by the key's hash, so no single thread carries every
//! customer. An address whose actor died (a panic) is replaced on the next lookup.
//!
//! **The cached customer lives here**, beside the actor's address: the actor publishes what it
//! loaded or committed ([`View`]) into its slot, and read-only requests (offer, token list) read
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

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::{Addr, ArbiterHandle, Supervisor};

use crate::customer::CustomerActor;
use crate::engine::Deps;
use crate::vault::records::CustomerSnapshot;

/// A customer: the union (namespace of customer numbers) and the number (already validated, R1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerKey {
    pub union_id: i64,
    pub customer_number: Arc<str>,
}

/// What an actor last loaded or committed: its customer (`None`: no such customer yet) and when.
#[derive(Clone)]
pub struct View {
    pub snapshot: Option<Arc<CustomerSnapshot>>,
    pub loaded_at: Instant,
}

struct Slot {
    addr: Addr<CustomerActor>,
    /// `None`: nothing loaded yet, or invalidated.
    view: Option<View>,
    /// Last lookup or read of this customer.
    last_seen: Instant,
}

/// Sent by the sweeper to an actor whose slot has been idle for `actor_idle`.
pub struct RetireIfIdle;

impl actix::Message for RetireIfIdle {
    type Result = ();
}

type Shard = Mutex<HashMap<CustomerKey, Slot>>;

struct Inner {
    shards: Vec<Shard>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    deps: Weak<Deps>,
}

/// Cheap to clone; all clones share the same actors.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// A registry whose actors retire after `idle` without use (a sweeper thread checks every
    /// `idle / 4`, at least every 50 ms; it ends with the registry).
    pub fn new(
        shards: usize,
        arbiters: Vec<ArbiterHandle>,
        deps: Weak<Deps>,
        idle: Duration,
    ) -> Registry {
        let registry = Registry {
            inner: Arc::new(Inner {
                shards: (0..shards.max(1))
                    .map(|_| Mutex::new(HashMap::new()))
                    .collect(),
                arbiters,
                hasher: Default::default(),
                deps,
            }),
        };
        let weak = Arc::downgrade(&registry.inner);
        let tick = (idle / 4).max(Duration::from_millis(50));
        let spawned = std::thread::Builder::new()
            .name("oneclick-sweeper".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                let Some(inner) = weak.upgrade() else { return };
                Registry { inner }.sweep(idle);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the idle-actor sweeper; actors stay cached");
        }
        registry
    }

    /// Asks every actor idle for `idle` to retire (a message each; the shard lock is held only
    /// while scanning one shard).
    fn sweep(&self, idle: Duration) {
        for shard in &self.inner.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for slot in shard.values() {
                if slot.last_seen.elapsed() >= idle {
                    slot.addr.do_send(RetireIfIdle);
                }
            }
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
        match shard.get(key) {
            Some(s) if &s.addr == addr && s.last_seen.elapsed() < idle => false,
            Some(s) if &s.addr == addr => {
                shard.remove(key);
                true
            }
            // Not registered any more (replaced after a panic): retire.
            _ => true,
        }
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
                slot.last_seen = Instant::now();
                return Some(slot.addr.clone());
            }
        }
        let deps = self.inner.deps.upgrade()?;
        let arbiter =
            &self.inner.arbiters[((hash >> 32) % self.inner.arbiters.len() as u64) as usize];
        let (k, registry) = (key.clone(), self.clone());
        let addr =
            Supervisor::start_in_arbiter(arbiter, move |_| CustomerActor::new(k, deps, registry));
        shard.insert(
            key.clone(),
            Slot {
                addr: addr.clone(),
                view: None,
                last_seen: Instant::now(),
            },
        );
        Some(addr)
    }

    /// The customer as its live actor last published it, if younger than `ttl`.
    pub fn fresh_view(&self, key: &CustomerKey, ttl: Duration) -> Option<View> {
        let mut shard = self.shard(self.hash(key));
        let slot = shard.get_mut(key)?;
        let view = slot.view.as_ref()?;
        if view.loaded_at.elapsed() > ttl || !slot.addr.connected() {
            return None;
        }
        let view = view.clone();
        slot.last_seen = Instant::now();
        Some(view)
    }

    /// Sets (or with `None` clears) the view of `key`, if `addr` is still its actor.
    pub fn publish(&self, key: &CustomerKey, addr: &Addr<CustomerActor>, view: Option<View>) {
        let mut shard = self.shard(self.hash(key));
        if let Some(slot) = shard.get_mut(key).filter(|s| &s.addr == addr) {
            slot.view = view;
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

    /// The registered actor of `key`, if any (test hook).
    pub fn peek(&self, key: &CustomerKey) -> Option<Addr<CustomerActor>> {
        self.shard(self.hash(key)).get(key).map(|s| s.addr.clone())
    }
}
