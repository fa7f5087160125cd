//! Shared helpers of the integration tests. Each test file includes this with `mod support;` and
//! uses the parts it needs, hence `dead_code` is allowed.
#![allow(dead_code)]

pub mod card_scan;
pub mod chaos;
pub mod engine;
pub mod nats;
