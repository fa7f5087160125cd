//! Scenario 11: the red team (security issue 12). Runs every attack of
//! `oneclick_testkit::attacks` against the stack as shipped (the shipped nats.conf, the real
//! binary, both database backends where the vault is involved), prints the attack → outcome
//! table, writes it to `<out>/red-team.md`, and fails when any attack succeeded. `--short` uses
//! the sizes of the default suite's `tests/red_team.rs`; the full form acknowledges 1,500 durable
//! commands before the purge attempt.

use oneclick_testkit::attacks;

use crate::report::Report;
use crate::Run;

pub async fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let short = run.short;
    // Attacks start actix systems and runtimes of their own: a plain thread, joined off the
    // runtime's workers.
    let outcomes = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || attacks::run_all(short))
            .join()
            .map_err(|_| anyhow::anyhow!("the red team panicked"))
    })
    .await??;
    let table = attacks::table(&outcomes);
    println!("{table}");
    std::fs::write(run.out.join("red-team.md"), &table)?;
    report.figure("attacks", outcomes.len() as i64);
    for o in &outcomes {
        report.expect(o.name, !o.succeeded, "stopped", &o.evidence);
    }
    Ok(())
}
