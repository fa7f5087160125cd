//! Attacks of the red-team (security issue 12): each attack is a function that starts what it
//! needs itself (a `nats-server` with the shipped configuration, the real `oneclick` binary, a
//! database), performs the attack, and reports whether it succeeded. The default test suite
//! asserts `!outcome.succeeded` for each; `scripts/chaos/red-team` runs the same functions and
//! prints a table. Where possible an attack includes a control showing its probe would see
//! success (the same action done legitimately is seen), so "not succeeded" means something.

pub mod identifiers;
pub mod logs;
pub mod nats_deputy;

/// What one attack found.
pub struct AttackOutcome {
    pub name: &'static str,
    pub succeeded: bool,
    pub evidence: String,
}
