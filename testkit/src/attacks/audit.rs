//! Attacks on the audit trail (PCI DSS 10.2): an operator with database access rewrites or erases
//! the record of what was done. The control is the database's own: triggers refuse `UPDATE` and
//! `DELETE` (and `TRUNCATE` on PostgreSQL) on `audit_log`, whoever runs them.

use diesel::connection::SimpleConnection;

use oneclick_actors::crypto::{Keyring, MasterKey};
use oneclick_actors::vault::audit::{append_audit, AppendAudit, AuditAction, AuditActor, Record};
use oneclick_actors::vault::DatabaseUrl;

use super::AttackOutcome;
use crate::engine::{Backend, RawConn, TestDb};

/// Raw SQL as a database user with full rights on the vault would run it.
fn raw(conn: &mut RawConn, sql: &str) -> Result<(), String> {
    match conn {
        RawConn::Pg(c) => c.batch_execute(sql),
        RawConn::Sqlite(c) => c.batch_execute(sql),
    }
    .map_err(|e| e.to_string())
}

/// The audit rows as text (`id|actor|action|detail`), to compare before and after.
fn rows(conn: &mut RawConn) -> Vec<Option<String>> {
    conn.texts(
        "SELECT CAST(id AS TEXT) || '|' || actor || '|' || action || '|' || detail AS v \
         FROM audit_log ORDER BY id",
    )
}

/// On a fresh, migrated vault with one audit row: `UPDATE`, `DELETE` (and on PostgreSQL
/// `TRUNCATE`) of `audit_log`, each in its own statement. Succeeds if any statement is accepted
/// or the rows differ afterwards. Control: the same `UPDATE` on `unions` is accepted and seen.
pub fn tamper_with_audit_trail(backend: Backend) -> AttackOutcome {
    let name = match backend {
        Backend::Sqlite => "audit trail rewritten with raw SQL (SQLite)",
        Backend::Postgres => "audit trail rewritten with raw SQL (PostgreSQL)",
    };
    let db = TestDb::new(backend);
    let url = DatabaseUrl::parse(&db.url).expect("database url");
    url.run_migrations().expect("migrations");
    let keyring =
        Keyring::new(vec![(1, MasterKey::generate())], 1, MasterKey::generate()).expect("keyring");
    {
        let mut conn = url.connect().expect("connection");
        append_audit(
            &mut conn,
            &keyring,
            AppendAudit(
                Record::new(AuditActor::admin_cli("red-team"), AuditAction::CardDeleted)
                    .merchant(1)
                    .detail(serde_json::json!({ "note": "the record to erase" })),
            ),
        )
        .expect("audit row");
    }
    let mut conn = RawConn::open(&db);
    let before = rows(&mut conn);
    let mut evidence = Vec::new();
    let mut accepted = Vec::new();

    // Control: an unprotected table takes the same kind of statement, and the probe sees it.
    let control = raw(
        &mut conn,
        "INSERT INTO unions (kind, name, created_at) VALUES ('own', 'control', 0); \
         UPDATE unions SET name = 'changed' WHERE name = 'control'",
    );
    let control_seen = conn
        .texts("SELECT name AS v FROM unions WHERE name = 'changed'")
        .len()
        == 1;
    evidence.push(format!(
        "control UPDATE unions: {}",
        if control.is_ok() && control_seen {
            "accepted and seen"
        } else {
            "NOT seen (probe broken)"
        }
    ));

    let mut attempts = vec![
        (
            "UPDATE",
            "UPDATE audit_log SET actor = 'someone-else', detail = '{}'",
        ),
        ("DELETE", "DELETE FROM audit_log"),
    ];
    if backend == Backend::Postgres {
        attempts.push(("TRUNCATE", "TRUNCATE audit_log"));
    }
    for (what, sql) in attempts {
        match raw(&mut conn, sql) {
            Ok(()) => accepted.push(what),
            Err(e) => evidence.push(format!(
                "{what} refused: {}",
                e.lines().next().unwrap_or("")
            )),
        }
    }
    let after = rows(&mut conn);
    let unchanged = before == after && before.len() == 1;
    evidence.push(format!(
        "rows before {}, after {}, identical: {unchanged}",
        before.len(),
        after.len()
    ));
    drop(conn);
    AttackOutcome {
        name,
        // A broken control counts as a success: the probe could not have seen one.
        succeeded: !(accepted.is_empty() && unchanged && control.is_ok() && control_seen),
        evidence: if accepted.is_empty() {
            evidence.join("; ")
        } else {
            format!("accepted: {}; {}", accepted.join(", "), evidence.join("; "))
        },
    }
}
