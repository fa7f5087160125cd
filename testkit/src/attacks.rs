//! Attacks of the red-team (security issue 12): each function performs one attack against what it
//! starts itself (a nats-server with the shipped configuration, the real `oneclick` binary, a
//! fresh database) and reports whether it succeeded. The regression tests assert
//! `!outcome.succeeded`; `scripts/chaos/red-team` runs the same functions and prints a table.

pub mod login;

/// What one attack achieved. `evidence` says what was tried and seen (never a secret).
pub struct AttackOutcome {
    pub name: &'static str,
    pub succeeded: bool,
    pub evidence: String,
}
