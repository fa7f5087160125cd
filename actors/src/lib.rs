//! The One Click engine: the product rules of docs/rules.md (R1–R18) applied by per-customer actix
//! actors over an encrypted, Diesel-backed vault.
//!
//! Layout (a module per concern):
//! - [`domain`]: validated newtypes and pure rule functions (no I/O, no actors);
//! - [`crypto`]: AES-256-GCM card encryption under versioned keys, keyed fingerprints;
//! - [`vault`]: the only place with SQL (SyncArbiter over r2d2 + Diesel, PostgreSQL or SQLite);
//! - [`reply`]: what the engine answers (masked cards only);
//! - [`decide`]: the rules over a customer's snapshot, as pure functions (the payment [`decide::Plan`]);
//! - [`pipeline`]: a decided payment made: reserve → acquirer → complete, through group commit;
//! - [`customer`] and `customer::registry`: one supervised actor per customer, found or started
//!   on demand, one typed message per verb (snapshot → decide → persist → next state → reply);
//! - [`engine`]: the facade (authenticate, validate, route to the customer's actor → reply);
//! - [`acquirer`]: the authorization boundary and its deterministic simulator;
//! - [`fault`]: the stable fault-code table every client-visible error maps to.

#![forbid(unsafe_code)]

pub mod acquirer;
pub mod crypto;
pub mod customer;
pub mod decide;
pub mod domain;
pub mod engine;
pub mod error;
pub mod fault;
pub mod pipeline;
pub mod reply;
pub mod secret;
pub mod settings;
pub mod vault;

pub use engine::{Engine, EngineError, EngineSettings};
pub use fault::{Fault, Language};
