//! Attacks of the red-team: each function performs one attack from issue 12 against real
//! servers it starts itself, and reports whether the attack's effect was observed. The
//! regression tests assert `!outcome.succeeded`; `scripts/chaos/red-team` runs the same
//! functions and prints attack → outcome. Where possible an attack first performs the same
//! action legitimately (the control), showing the probe would see a success.

pub mod vault;

/// What one attack achieved.
pub struct AttackOutcome {
    pub name: &'static str,
    pub succeeded: bool,
    pub evidence: String,
}
