//! Attacks of the red-team (security issue 12): each attack is a function that starts what it
//! needs itself (a `nats-server` with the shipped configuration, the real `oneclick` binary, a
//! database), performs the attack, and reports whether it succeeded. The default test suite
//! asserts `!outcome.succeeded` for each; `scripts/chaos/red-team` runs the same functions and
//! prints a table. Where possible an attack includes a control showing its probe would see
//! success (the same action done legitimately is seen), so "not succeeded" means something.

pub mod audit;
pub mod identifiers;
pub mod login;
pub mod logs;
pub mod nats_deputy;
pub mod vault;

/// What one attack achieved. `evidence` says what was tried and seen (never a secret).
pub struct AttackOutcome {
    pub name: &'static str,
    pub succeeded: bool,
    pub evidence: String,
}

impl AttackOutcome {
    /// An attack that could not be run to its end (a panic in its setup) counts as succeeded: a
    /// red team that cannot see is no evidence of a defence.
    fn crashed(name: &'static str, panic: Box<dyn std::any::Any + Send>) -> AttackOutcome {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        AttackOutcome {
            name,
            succeeded: true,
            evidence: format!("the attack did not run to its end: {why}"),
        }
    }
}

type Attack = (&'static str, Box<dyn FnOnce() -> AttackOutcome + Send>);

/// Runs an async attack on a runtime of its own (each attack starts its own servers).
fn on_runtime<F, Fut>(f: F) -> Box<dyn FnOnce() -> AttackOutcome + Send>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = AttackOutcome>,
{
    Box::new(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the attack")
            .block_on(f())
    })
}

/// Every attack of issue 12, in the order of its findings, against the stack as shipped (the
/// shipped nats.conf, the real binary, both database backends where the vault is involved).
/// `short` makes the sizes small enough for the default test suite.
fn every_attack(short: bool) -> Vec<Attack> {
    use crate::engine::Backend::{Postgres, Sqlite};
    let commands = if short { 300 } else { 1_500 };
    let mut attacks: Vec<Attack> = vec![
        (
            "1 purge the command stream",
            on_runtime(move || nats_deputy::purge_command_stream(commands)),
        ),
        (
            "1 purge the event stream",
            on_runtime(nats_deputy::purge_event_stream),
        ),
        (
            "1 forge another merchant's event",
            on_runtime(nats_deputy::fake_event_for_another_merchant),
        ),
        (
            "1 append a command",
            on_runtime(nats_deputy::append_command),
        ),
        (
            "1 reply into another merchant's inbox",
            on_runtime(nats_deputy::reply_into_another_merchants_inbox),
        ),
        (
            "1 $SRV discovery to a foreign subject",
            on_runtime(|| async { nats_deputy::service_discovery_with_foreign_reply().await.0 }),
        ),
    ];
    for backend in [logs::Backend::Sqlite, logs::Backend::Postgres] {
        attacks.push((
            "2 read secrets in trace logs",
            on_runtime(move || logs::trace_logs_carry_secrets(backend)),
        ));
    }
    attacks.push((
        "3 brute-force a merchant login",
        on_runtime(login::brute_force_merchant_login),
    ));
    for backend in [Sqlite, Postgres] {
        attacks.push((
            "8 hostile identifiers",
            on_runtime(move || identifiers::hostile_identifiers_are_stored(backend)),
        ));
    }
    for backend in [Sqlite, Postgres] {
        attacks.push((
            "7 move a card, swap a ciphertext, rename a customer",
            Box::new(move || {
                let outcomes = vault::all(backend);
                let succeeded: Vec<&str> = outcomes
                    .iter()
                    .filter(|o| o.succeeded)
                    .map(|o| o.name)
                    .collect();
                AttackOutcome {
                    name: if backend == Sqlite {
                        "operator with database access moves, swaps and relabels cards (SQLite)"
                    } else {
                        "operator with database access moves, swaps and relabels cards (PostgreSQL)"
                    },
                    succeeded: !succeeded.is_empty(),
                    evidence: outcomes
                        .iter()
                        .map(|o| format!("{}: {}", o.name, o.evidence))
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            }),
        ));
    }
    for backend in [Sqlite, Postgres] {
        attacks.push((
            "11 tamper with the audit trail",
            Box::new(move || audit::tamper_with_audit_trail(backend)),
        ));
    }
    attacks
}

/// Runs every attack one after the other, each in a thread of its own (an attack may start an
/// actix system or a runtime), printing a line as each ends; returns the outcomes in order.
pub fn run_all(short: bool) -> Vec<AttackOutcome> {
    let attacks = every_attack(short);
    let total = attacks.len();
    let mut outcomes = Vec::with_capacity(total);
    for (i, (name, attack)) in attacks.into_iter().enumerate() {
        let started = std::time::Instant::now();
        let outcome = std::thread::spawn(attack)
            .join()
            .unwrap_or_else(|panic| AttackOutcome::crashed(name, panic));
        eprintln!(
            "[red-team {}/{total}] {} — {} ({:.1} s)",
            i + 1,
            outcome.name,
            if outcome.succeeded {
                "SUCCEEDED"
            } else {
                "stopped"
            },
            started.elapsed().as_secs_f64()
        );
        outcomes.push(outcome);
    }
    outcomes
}

/// The attack → outcome table the red team prints.
pub fn table(outcomes: &[AttackOutcome]) -> String {
    let mut out = String::from("| attack | outcome | evidence |\n|---|---|---|\n");
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            o.name,
            if o.succeeded {
                "**SUCCEEDED**"
            } else {
                "stopped"
            },
            o.evidence.replace('|', "\\|").replace('\n', " ")
        ));
    }
    out
}
