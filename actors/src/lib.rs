//! The One Click engine: the product rules of `DESIGN.md` (R1–R18) applied by per-customer actix
//! actors over an encrypted, Diesel-backed vault.
//!
//! Layout (a module per concern):
//! - [`domain`]: validated newtypes and pure rule functions (no I/O, no actors);
//! - [`crypto`]: AES-256-GCM card encryption under versioned keys, keyed fingerprints;
//! - [`acquirer`]: the authorization boundary and its deterministic simulator;
//! - [`fault`]: the stable fault-code table every client-visible error maps to.

#![forbid(unsafe_code)]

pub mod acquirer;
pub mod crypto;
pub mod domain;
pub mod fault;
pub mod engine;
pub mod vault;
