//! `oneclick admin vault backup|restore|manifest|verify`: the backup and restore drill
//! (deploy/README.md, "Backup and restore"). A backup is a folder with the database and its manifest — never a key:
//! these commands do not even load the key file, except `verify`, which must open every card.
//!
//! - `backup --out DIR` (a new folder, mode 0700): SQLite by `VACUUM INTO` (an online,
//!   consistent copy) and the manifest counted on that copy; PostgreSQL by `pg_dump -Fc` of the
//!   pg_dump whose major version is the server's (refused otherwise), run on a snapshot exported
//!   from a REPEATABLE READ transaction in which the manifest is counted, so the two agree exactly
//!   while the service keeps writing.
//! - `restore --from DIR` into the configured database, which must be new (SQLite: no file;
//!   PostgreSQL: no table), by a file copy or `pg_restore --single-transaction`.
//! - `manifest` prints the row count of every table (what `backup` writes as manifest.json).
//! - `verify [--expect DIR/manifest.json]` opens every stored card and agreement with the key ring
//!   (checking that the number opened matches its stored BIN, last four digits and length, and its
//!   keyed fingerprint), compares the counts with the manifest, and names each problem by table
//!   or row id — never card data. Rows are read in id order, [`VERIFY_BATCH`] at a time.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use oneclick_actors::crypto::{agreement_aad, card_aad_for, Keyring};
use oneclick_actors::vault::schema::{cards, customers, recurring_agreements};
use oneclick_actors::vault::{AnyConnection, DatabaseUrl};

use crate::config::Settings;

/// Rows read per query by `verify`.
pub const VERIFY_BATCH: i64 = 500;
const MANIFEST_FORMAT: &str = "oneclick-vault-manifest/1";
const SQLITE_FILE: &str = "vault.sqlite";
const PG_FILE: &str = "vault.pgdump";
const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Back the vault database up into a new folder (mode 0700): the database and
    /// manifest.json. No key material: keep the key file and the KEK in backups of their own.
    Backup {
        #[arg(long)]
        out: PathBuf,
        /// Folder of pg_dump/pg_restore [default: /usr/lib/postgresql/<server major>/bin, then PATH].
        #[arg(long, env = "ONECLICK_PG_BINDIR")]
        pg_bindir: Option<PathBuf>,
    },
    /// Restore a backup folder into the configured database, which must be new and empty.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "ONECLICK_PG_BINDIR")]
        pg_bindir: Option<PathBuf>,
    },
    /// Print the row count of every table (JSON), as a backup's manifest.json holds it.
    Manifest,
    /// Open every stored card and agreement with the key ring and compare the row counts with a
    /// manifest; names each problem by table or row id (never card data). Exit 1 on any problem.
    Verify {
        /// A backup's manifest.json: every table must hold exactly its counts.
        #[arg(long)]
        expect: Option<PathBuf>,
    },
}

pub fn run(settings: &Settings, command: VaultCommand) -> anyhow::Result<()> {
    match command {
        VaultCommand::Backup { out, pg_bindir } => backup(settings, &out, pg_bindir.as_deref()),
        VaultCommand::Restore { from, pg_bindir } => restore(settings, &from, pg_bindir.as_deref()),
        VaultCommand::Manifest => {
            let mut conn = connect(&settings.database.url)?;
            let manifest = manifest(&mut conn, &settings.database.url)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        VaultCommand::Verify { expect } => verify(settings, expect.as_deref()),
    }
}

fn connect(url: &str) -> anyhow::Result<AnyConnection> {
    Ok(DatabaseUrl::parse(url)?.connect()?)
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

/// Every table of the database (from its catalog, so a table added by a later migration is
/// counted too; the migrations' own table included: a restore without it would migrate again).
fn tables(conn: &mut AnyConnection) -> anyhow::Result<Vec<String>> {
    let names: Vec<TextRow> = match conn {
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "SELECT tablename AS v FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
        )
        .load(c),
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "SELECT name AS v FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
        )
        .load(c),
    }
    .context("listing the tables")?;
    names
        .into_iter()
        .map(|row| {
            // Quoted below; a name outside [a-z0-9_] is not one of ours.
            if row
                .v
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                Ok(row.v)
            } else {
                bail!("unexpected table name {:?}", row.v)
            }
        })
        .collect()
}

/// Row counts of every table.
fn counts(conn: &mut AnyConnection) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for table in tables(conn)? {
        let query = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM \"{table}\""));
        let row: CountRow = match conn {
            AnyConnection::Postgresql(c) => query.get_result(c),
            AnyConnection::Sqlite(c) => query.get_result(c),
        }
        .with_context(|| format!("counting {table}"))?;
        out.insert(table, row.n);
    }
    Ok(out)
}

fn manifest(conn: &mut AnyConnection, url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "format": MANIFEST_FORMAT,
        "backend": if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        "taken_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "tables": counts(conn)?,
    }))
}

/// The path of an `sqlite://PATH` (or `sqlite:PATH`) URL.
fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
}

/// A new folder only its owner can enter.
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("--out {}: must be a new folder", path.display()))
}

fn backup(settings: &Settings, out: &Path, pg_bindir: Option<&Path>) -> anyhow::Result<()> {
    let url = &settings.database.url;
    let mut conn = connect(url)?;
    create_private_dir(out)?;
    let manifest = if let AnyConnection::Sqlite(c) = &mut conn {
        let copy = out.join(SQLITE_FILE);
        let target = copy
            .to_str()
            .context("the backup folder's path is not UTF-8")?;
        // One read transaction of SQLite's: a consistent copy while the service writes.
        diesel::sql_query("VACUUM INTO ?")
            .bind::<Text, _>(target)
            .execute(c)
            .context("VACUUM INTO")?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))?;
        manifest(&mut connect(&format!("sqlite://{target}"))?, url)?
    } else {
        backup_postgres(&mut conn, url, &out.join(PG_FILE), pg_bindir)?
    };
    std::fs::set_permissions(
        out.join(match manifest["backend"].as_str() {
            Some("sqlite") => SQLITE_FILE,
            _ => PG_FILE,
        }),
        std::fs::Permissions::from_mode(0o600),
    )?;
    crate::keys::write_new_file(
        &out.join(MANIFEST_FILE),
        &(serde_json::to_string_pretty(&manifest)? + "\n"),
    )?;
    println!(
        "backup written to {} ({}): {} rows in {} tables; no key material in it — back up the key \
         file and the KEK separately",
        out.display(),
        manifest["backend"].as_str().unwrap_or("?"),
        manifest["tables"]
            .as_object()
            .map(|t| t.values().filter_map(|v| v.as_i64()).sum::<i64>())
            .unwrap_or(0),
        manifest["tables"].as_object().map_or(0, |t| t.len())
    );
    println!(
        "restore drill: ONECLICK__DATABASE__URL=<a new database> oneclick admin vault restore --from {dir} \
         && oneclick admin vault verify --expect {dir}/{MANIFEST_FILE}",
        dir = out.display()
    );
    Ok(())
}

/// pg_dump on a snapshot exported from the REPEATABLE READ transaction that counts the rows:
/// the manifest describes exactly what the archive holds.
fn backup_postgres(
    conn: &mut AnyConnection,
    url: &str,
    dump: &Path,
    pg_bindir: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let AnyConnection::Postgresql(c) = &mut *conn else {
        bail!("database.url: not PostgreSQL");
    };
    let pg_dump = pg_tool("pg_dump", pg_bindir, server_major(c)?)?;
    let libpq = LibpqTarget::parse(url)?;
    conn.transaction(|conn| -> anyhow::Result<serde_json::Value> {
        let AnyConnection::Postgresql(c) = &mut *conn else {
            bail!("database.url: not PostgreSQL");
        };
        diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(c)?;
        let snapshot: TextRow =
            diesel::sql_query("SELECT pg_export_snapshot() AS v").get_result(c)?;
        let mut manifest = manifest(conn, url)?;
        let mut cmd = Command::new(&pg_dump);
        cmd.args(["--format=custom", "--no-owner", "--no-privileges"])
            .arg(format!("--snapshot={}", snapshot.v))
            .arg("--file")
            .arg(dump)
            .arg(format!("--dbname={}", libpq.uri));
        libpq.password_env(&mut cmd);
        let status = cmd.status().context("running pg_dump")?;
        if !status.success() {
            bail!("pg_dump failed ({status})");
        }
        manifest["snapshot"] = serde_json::Value::String(snapshot.v);
        Ok(manifest)
    })
}

fn server_major(c: &mut PgConnection) -> anyhow::Result<u32> {
    let row: TextRow =
        diesel::sql_query("SELECT current_setting('server_version_num') AS v").get_result(c)?;
    let num: u32 = row.v.trim().parse().context("server_version_num")?;
    Ok(num / 10_000)
}

/// The major version a PostgreSQL client tool reports (`pg_dump (PostgreSQL) 15.20 (Debian …)`).
fn tool_major(tool: &Path) -> Option<u32> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    version.split('.').next()?.parse().ok()
}

/// `name` of the server's major version: in `bindir` when given, else Debian's
/// /usr/lib/postgresql/<major>/bin, else PATH. Another major version is refused: a newer pg_dump
/// writes archives an older pg_restore cannot read, an older one refuses the server.
fn pg_tool(name: &str, bindir: Option<&Path>, server_major: u32) -> anyhow::Result<PathBuf> {
    let candidates = match bindir {
        Some(dir) => vec![dir.join(name)],
        None => vec![
            PathBuf::from(format!("/usr/lib/postgresql/{server_major}/bin/{name}")),
            PathBuf::from(name),
        ],
    };
    let mut found = Vec::new();
    for candidate in candidates {
        match tool_major(&candidate) {
            Some(major) if major == server_major => return Ok(candidate),
            Some(major) => found.push(format!("{} is {major}", candidate.display())),
            None => found.push(format!("{}: not found", candidate.display())),
        }
    }
    bail!(
        "{name} of PostgreSQL {server_major} (the server's major version) not found ({}); install \
         postgresql-client-{server_major} or give --pg-bindir",
        found.join("; ")
    )
}

/// A PostgreSQL URL for libpq tools: the URI without its password (argv is visible to every
/// user of the machine) and the password apart, for PGPASSWORD.
struct LibpqTarget {
    uri: String,
    password: Option<String>,
}

impl LibpqTarget {
    fn parse(url: &str) -> anyhow::Result<LibpqTarget> {
        let (scheme, rest) = url.split_once("://").context("database.url: no scheme")?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return Ok(LibpqTarget {
                uri: url.to_string(),
                password: None,
            });
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(percent_decode(p))),
            None => (userinfo, None),
        };
        Ok(LibpqTarget {
            uri: format!("{scheme}://{user}@{host}{tail}"),
            password,
        })
    }

    fn password_env(&self, cmd: &mut Command) {
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn restore(settings: &Settings, from: &Path, pg_bindir: Option<&Path>) -> anyhow::Result<()> {
    let url = &settings.database.url;
    let manifest_path = from.join(MANIFEST_FILE);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("{}", manifest_path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", manifest_path.display()))?;
    if manifest["format"] != MANIFEST_FORMAT {
        bail!("{}: not a oneclick vault manifest", manifest_path.display());
    }
    if let Some(path) = sqlite_path(url) {
        if manifest["backend"] != "sqlite" {
            bail!(
                "{} is a PostgreSQL backup; database.url is SQLite",
                from.display()
            );
        }
        let target = Path::new(path);
        if target.exists() {
            bail!(
                "{path} exists: a backup is restored only into a new database (move it away first)"
            );
        }
        let source = from.join(SQLITE_FILE);
        std::fs::copy(&source, target)
            .with_context(|| format!("copying {} to {path}", source.display()))?;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o600))?;
    } else {
        if manifest["backend"] != "postgres" {
            bail!(
                "{} is an SQLite backup; database.url is PostgreSQL",
                from.display()
            );
        }
        let mut conn = connect(url)?;
        let AnyConnection::Postgresql(c) = &mut conn else {
            bail!("database.url: neither SQLite nor PostgreSQL");
        };
        let tables: CountRow = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        .get_result(c)?;
        if tables.n > 0 {
            bail!(
                "the target database has {} table(s): a backup is restored only into a new, empty database",
                tables.n
            );
        }
        let pg_restore = pg_tool("pg_restore", pg_bindir, server_major(c)?)?;
        let libpq = LibpqTarget::parse(url)?;
        let mut cmd = Command::new(&pg_restore);
        cmd.args([
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
        ])
        .arg(format!("--dbname={}", libpq.uri))
        .arg(from.join(PG_FILE));
        libpq.password_env(&mut cmd);
        let status = cmd.status().context("running pg_restore")?;
        if !status.success() {
            bail!("pg_restore failed ({status}); the target database was left as it was (one transaction)");
        }
    }
    println!(
        "restored {} into the configured database; now check it: oneclick admin vault verify --expect {}",
        from.display(),
        manifest_path.display()
    );
    Ok(())
}

/// What `verify` found wrong; each names a table or a row id, never card data.
fn verify(settings: &Settings, expect: Option<&Path>) -> anyhow::Result<()> {
    let keyring = crate::keys::load(&settings.keys).context("the key ring (keys.file)")?;
    let mut conn = connect(&settings.database.url)?;
    let mut problems = Vec::new();
    let found = counts(&mut conn)?;
    if let Some(path) = expect {
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
        )
        .with_context(|| format!("{}: not JSON", path.display()))?;
        let tables = manifest["tables"]
            .as_object()
            .with_context(|| format!("{}: no `tables`", path.display()))?;
        for (table, n) in &found {
            match tables.get(table).and_then(|v| v.as_i64()) {
                Some(want) if want == *n => {}
                Some(want) => {
                    problems.push(format!("table {table}: {n} rows, the manifest says {want}"))
                }
                None => problems.push(format!("table {table}: not in the manifest")),
            }
        }
    }
    let (cards_ok, card_problems) = verify_cards(&mut conn, &keyring)?;
    let (agreements_ok, agreement_problems) = verify_agreements(&mut conn, &keyring)?;
    problems.extend(card_problems);
    problems.extend(agreement_problems);
    println!(
        "cards: {cards_ok} opened and matching; agreements: {agreements_ok} opened and matching; \
         tables counted: {}{}",
        found.len(),
        if expect.is_some() {
            " (against the manifest)"
        } else {
            ""
        }
    );
    for p in &problems {
        println!("PROBLEM {p}");
    }
    if !problems.is_empty() {
        bail!("vault verify: {} problem(s)", problems.len());
    }
    println!("vault verify: OK");
    Ok(())
}

/// Whether an opened number agrees with the clear columns stored beside it.
fn matches_row(pan: &[u8], bin: &str, last4: &str, length: i32) -> bool {
    pan.len() == usize::try_from(length).unwrap_or(usize::MAX)
        && pan.starts_with(bin.as_bytes())
        && pan.ends_with(last4.as_bytes())
}

type CardRow = (
    i64,
    String,
    i64,
    Option<String>,
    Option<Vec<u8>>,
    Option<i32>,
    i32,
    Option<Vec<u8>>,
    String,
    String,
    i32,
);

fn verify_cards(
    conn: &mut AnyConnection,
    keyring: &Keyring,
) -> anyhow::Result<(usize, Vec<String>)> {
    let (mut ok, mut problems, mut after) = (0, Vec::new(), i64::MIN);
    loop {
        let rows: Vec<CardRow> = cards::table
            .left_join(customers::table)
            .filter(cards::pan_ciphertext.is_not_null())
            .filter(cards::id.gt(after))
            .order(cards::id)
            .limit(VERIFY_BATCH)
            .select((
                cards::id,
                cards::token,
                cards::customer_id,
                customers::customer_number.nullable(),
                cards::pan_ciphertext,
                cards::key_version,
                cards::aad_version,
                cards::fingerprint,
                cards::bin,
                cards::last4,
                cards::pan_length,
            ))
            .load(conn)?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, token, customer_id, number, blob, version, aad_version, fp, bin, last4, len) in
            rows
        {
            let Some(number) = number else {
                problems.push(format!(
                    "card {id}: its customer row {customer_id} is missing"
                ));
                continue;
            };
            let (Some(blob), Some(version)) = (blob, version) else {
                problems.push(format!("card {id}: a ciphertext without a key version"));
                continue;
            };
            let opened = u32::try_from(version).ok().and_then(|v| {
                let aad = card_aad_for(aad_version, customer_id, &number, &token).ok()?;
                keyring.open(v, &blob, &aad).ok()
            });
            let Some(pan) = opened else {
                problems.push(format!(
                    "card {id}: cannot be opened (key version {version}, associated data version {aad_version})"
                ));
                continue;
            };
            if !matches_row(&pan, &bin, &last4, len) {
                problems.push(format!(
                    "card {id}: opens, but not to the number its BIN, last four digits and length say"
                ));
            } else if fp
                .as_deref()
                .is_some_and(|fp| fp != keyring.fingerprint(&pan))
            {
                problems.push(format!(
                    "card {id}: its fingerprint does not match (another fingerprint key?)"
                ));
            } else {
                ok += 1;
            }
        }
    }
    Ok((ok, problems))
}

fn verify_agreements(
    conn: &mut AnyConnection,
    keyring: &Keyring,
) -> anyhow::Result<(usize, Vec<String>)> {
    type Row = (i64, i64, String, Vec<u8>, i32, String, String, i32);
    let (mut ok, mut problems, mut after) = (0, Vec::new(), i64::MIN);
    loop {
        let rows: Vec<Row> = recurring_agreements::table
            .filter(recurring_agreements::id.gt(after))
            .order(recurring_agreements::id)
            .limit(VERIFY_BATCH)
            .select((
                recurring_agreements::id,
                recurring_agreements::merchant_id,
                recurring_agreements::order_number,
                recurring_agreements::pan_ciphertext,
                recurring_agreements::key_version,
                recurring_agreements::bin,
                recurring_agreements::last4,
                recurring_agreements::pan_length,
            ))
            .load(conn)?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, merchant_id, order_number, blob, version, bin, last4, len) in rows {
            let opened = u32::try_from(version).ok().and_then(|v| {
                keyring
                    .open(v, &blob, &agreement_aad(merchant_id, &order_number))
                    .ok()
            });
            match opened {
                None => problems.push(format!(
                    "agreement {id}: cannot be opened (key version {version})"
                )),
                Some(pan) if !matches_row(&pan, &bin, &last4, len) => problems.push(format!(
                    "agreement {id}: opens, but not to the number its BIN, last four digits and length say"
                )),
                Some(_) => ok += 1,
            }
        }
    }
    Ok((ok, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_targets_keep_the_password_off_the_command_line() {
        let t =
            LibpqTarget::parse("postgres://oneclick:p%40ss@db:5432/oneclick?sslmode=verify-full")
                .expect("parses");
        assert_eq!(
            t.uri,
            "postgres://oneclick@db:5432/oneclick?sslmode=verify-full"
        );
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        let t = LibpqTarget::parse("postgres://postgres@127.0.0.1:5432/x").expect("parses");
        assert_eq!(t.uri, "postgres://postgres@127.0.0.1:5432/x");
        assert!(t.password.is_none());
    }

    #[test]
    fn an_opened_number_must_agree_with_its_clear_columns() {
        assert!(matches_row(b"4111111111111111", "411111", "1111", 16));
        assert!(!matches_row(b"4111111111111111", "411111", "1112", 16));
        assert!(!matches_row(b"4111111111111111", "511111", "1111", 16));
        assert!(!matches_row(b"4111111111111111", "411111", "1111", 15));
    }
}
