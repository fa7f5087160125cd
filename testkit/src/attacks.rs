//! Attacks of the red-team (security issue 12): each function starts what it needs itself, tries
//! one attack against oneclick as shipped, and says whether it succeeded, with evidence. Tests
//! assert `!outcome.succeeded`; `scripts/chaos/red-team` runs the same functions and prints a
//! table attack → outcome. Where possible an attack includes a control showing that its probe
//! would see a success (the same action done legitimately, or on an unprotected target, is seen).

pub mod audit;

/// What an attack found.
pub struct AttackOutcome {
    pub name: &'static str,
    pub succeeded: bool,
    pub evidence: String,
}
