//! Attacks of the red-team (issue 12): each attack is a function that starts what it needs
//! itself (a nats-server with the shipped configuration, the real `oneclick` binary), performs the
//! attack as an attacker would, and reports whether its effect was seen. The regression tests
//! assert `!outcome.succeeded`; `scripts/chaos/red-team` runs the same functions and prints a
//! table. Where possible an attack also runs a control (the same action done legitimately is
//! seen), so a probe that cannot see anything does not pass for a defence: a failed control
//! counts as a success of the attack.

pub mod nats_deputy;

/// What one attack achieved.
pub struct AttackOutcome {
    pub name: &'static str,
    pub succeeded: bool,
    pub evidence: String,
}
