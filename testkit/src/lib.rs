//! oneclick's shared test kit: real servers (a private `nats-server` per test, fresh PostgreSQL
//! and SQLite databases), the `oneclick` binary as a child process, the engine harness that runs
//! a test body on both backends, and the card-data scan. Used by the integration tests in
//! `tests/` (each names it `support`: `use oneclick_testkit as support;`), the chaos scenarios
//! and the benchmark, so there is one copy of each helper.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

pub mod attacks;
pub mod browser;
pub mod card_scan;
pub mod chaos;
pub mod demo;
pub mod engine;
pub mod inbox;
pub mod nats;
pub mod nats_cluster;
pub mod postgres;
pub mod schema;
pub mod web;
