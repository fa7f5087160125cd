//! Issue 16 item 7: the backup and restore drill on a small vault, on both backends, with the
//! real `oneclick admin vault` commands: cards saved and an agreement made by the engine, a
//! backup (no key in it, no PAN in it), a restore into a fresh database, `verify --expect` passes;
//! then the restored copy is damaged — a flipped ciphertext bit, a deleted row — and `verify`
//! fails naming the card and the table, without printing card data.

use oneclick_testkit as support;

use std::path::Path;
use std::process::Command;

use oneclick_actors::crypto::LocalKek;
use support::both_backends;
use support::card_scan::{self, Haystack};
use support::engine::{Backend, Harness, RawConn, TestDb, A};

const PANS: [&str; 4] = [
    "4111111111111111",
    "5555555555554444",
    "2200000000000004",
    "4012888888881881",
];

/// `oneclick admin <args>` against `database_url` with the key files (when given); success and
/// everything it printed.
fn admin(
    database_url: &str,
    keys: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    args: &[&str],
) -> (bool, String) {
    let mut cmd = Command::new(support::nats::bin());
    cmd.arg("admin")
        .args(args)
        .env("ONECLICK__DATABASE__URL", database_url);
    if let Some((keys, kek)) = keys {
        cmd.env("ONECLICK__KEYS__FILE", keys)
            .env("ONECLICK__KEYS__KEK_FILE", kek);
    }
    support::nats::status_and_output(&cmd.output().expect("oneclick admin"))
}

/// The harness's key ring written as deployed: a key file wrapped by a KEK, in their own folder.
fn write_keys(h: &Harness, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let kek = LocalKek::generate();
    let (keys_path, kek_path) = (dir.join("keys.txt"), dir.join("kek.txt"));
    std::fs::write(&kek_path, kek.file_text().as_bytes()).expect("kek");
    std::fs::write(
        &keys_path,
        h.keyring
            .to_wrapped_file_text(&kek)
            .expect("wrapped key file")
            .as_bytes(),
    )
    .expect("keys");
    for p in [&keys_path, &kek_path] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    (keys_path, kek_path)
}

/// Every file of the backup, and for PostgreSQL also the SQL pg_restore makes of the (compressed)
/// archive, so a PAN or key could not hide behind compression.
fn backup_haystacks(backup: &Path, backend: Backend) -> Vec<Haystack> {
    let mut haystacks = card_scan::file_haystacks(backup, "backup", |_| false);
    if backend == Backend::Postgres {
        let sql = Command::new(support::postgres::bindir().join("pg_restore"))
            .arg("--file=-")
            .arg(backup.join("vault.pgdump"))
            .output()
            .expect("pg_restore --file=-");
        assert!(sql.status.success(), "pg_restore to SQL");
        assert!(
            String::from_utf8_lossy(&sql.stdout).contains("COPY public.cards"),
            "the archive holds the cards"
        );
        haystacks.push(Haystack {
            place: "backup as SQL (pg_restore --file=-)".into(),
            bytes: sql.stdout,
            numbers_only: false,
        });
    }
    haystacks
}

/// The key material's values (each line's value of the key file and the KEK file).
fn key_needles(files: &[&Path]) -> Vec<card_scan::Needle> {
    let mut needles = Vec::new();
    for file in files {
        for line in std::fs::read_to_string(file).expect("key file").lines() {
            let value = line.split_once('=').map_or(line, |(_, v)| v).trim();
            if value.len() >= 16 {
                needles.push(card_scan::Needle {
                    what: format!("a value of {}", file.display()),
                    bytes: value.as_bytes().to_vec(),
                    whole: false,
                });
            }
        }
    }
    assert!(needles.len() >= 2, "key values found to look for");
    needles
}

/// Flips one bit of the ciphertext of card `id` in `db`.
fn flip_ciphertext_bit(db: &TestDb, id: i64) {
    let mut raw = RawConn::open(db);
    let hex_of = match db.backend {
        Backend::Postgres => {
            format!("SELECT encode(pan_ciphertext, 'hex') AS v FROM cards WHERE id = {id}")
        }
        Backend::Sqlite => {
            format!("SELECT lower(hex(pan_ciphertext)) AS v FROM cards WHERE id = {id}")
        }
    };
    let hex = raw.texts(&hex_of)[0].clone().expect("ciphertext");
    let mut bytes = card_scan::unhex(&hex);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let flipped = card_scan::hex(&bytes);
    let update = match db.backend {
        Backend::Postgres => {
            format!("UPDATE cards SET pan_ciphertext = decode('{flipped}', 'hex') WHERE id = {id}")
        }
        Backend::Sqlite => {
            format!("UPDATE cards SET pan_ciphertext = X'{flipped}' WHERE id = {id}")
        }
    };
    assert_eq!(raw.exec(&update), 1);
}

async fn a_backup_restores_into_a_fresh_database_that_verifies_and_damage_is_named(h: Harness) {
    for (i, pan) in PANS.iter().enumerate() {
        h.save_card(A, &format!("backup-{i}"), pan).await;
    }
    h.start_agreement(A, PANS[0], "123").await;
    let keys_dir = tempfile::tempdir().expect("keys dir");
    let keys = write_keys(&h, keys_dir.path());
    let scratch = tempfile::tempdir().expect("scratch");
    let backup = scratch.path().join("backup");

    let (ok, out) = admin(
        &h.db.url,
        None,
        &["vault", "backup", "--out", backup.to_str().expect("path")],
    );
    assert!(ok, "backup: {out}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(backup.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest is JSON");
    assert_eq!(manifest["tables"]["cards"], PANS.len() as i64, "{manifest}");
    assert_eq!(manifest["tables"]["recurring_agreements"], 1, "{manifest}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&backup), 0o700, "the backup folder is private");
        for entry in std::fs::read_dir(&backup).expect("backup") {
            let path = entry.expect("entry").path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    // Attacker view: the backup holds neither a key nor a card number in any stored form.
    let mut needles =
        card_scan::needles(&PANS.iter().map(|p| p.to_string()).collect::<Vec<_>>(), &[]);
    needles.extend(key_needles(&[&keys.0, &keys.1]));
    let found = card_scan::sweep(&backup_haystacks(&backup, h.backend), &needles);
    assert!(found.is_empty(), "found in the backup: {found:?}");

    // Restore into a fresh database of the same backend, then verify against the manifest.
    let restored = TestDb::new(h.backend);
    let manifest_path = backup.join("manifest.json");
    let manifest_arg = manifest_path.to_str().expect("path");
    let (ok, out) = admin(
        &restored.url,
        None,
        &["vault", "restore", "--from", backup.to_str().expect("path")],
    );
    assert!(ok, "restore: {out}");
    let (ok, out) = admin(
        &restored.url,
        Some(&keys),
        &["vault", "verify", "--expect", manifest_arg],
    );
    assert!(ok, "verify of the restored copy: {out}");
    assert!(
        out.contains(&format!(
            "cards: {} opened and matching; agreements: 1 opened",
            PANS.len()
        )),
        "{out}"
    );
    // A second restore over the restored copy is refused: only into a new database.
    let (ok, out) = admin(
        &restored.url,
        None,
        &["vault", "restore", "--from", backup.to_str().expect("path")],
    );
    assert!(!ok && out.contains("new"), "restore over a vault: {out}");

    // Without the right keys nothing opens: the backup alone is ciphertext.
    let other = Harness::start(h.backend).await;
    let other_keys_dir = tempfile::tempdir().expect("dir");
    let other_keys = write_keys(&other, other_keys_dir.path());
    let (ok, out) = admin(&restored.url, Some(&other_keys), &["vault", "verify"]);
    assert!(
        !ok && out.contains("cannot be opened"),
        "verify with other keys: {out}"
    );

    // Damage 1: one flipped ciphertext bit, named by card id.
    let mut raw = RawConn::open(&restored);
    let card_id = raw.numbers("SELECT MIN(id) AS n FROM cards")[0];
    drop(raw);
    flip_ciphertext_bit(&restored, card_id);
    let (ok, out) = admin(
        &restored.url,
        Some(&keys),
        &["vault", "verify", "--expect", manifest_arg],
    );
    assert!(!ok, "a flipped bit passed verify: {out}");
    assert!(
        out.contains(&format!("card {card_id}: cannot be opened")),
        "{out}"
    );
    assert!(
        out.contains(&format!("cards: {} opened", PANS.len() - 1)),
        "{out}"
    );
    // Damage 2: a deleted row, named by table and counts.
    let mut raw = RawConn::open(&restored);
    let orders = raw.numbers("SELECT COUNT(*) AS n FROM orders")[0];
    assert_eq!(
        raw.exec("DELETE FROM orders WHERE id = (SELECT MIN(id) FROM orders)"),
        1
    );
    drop(raw);
    let (ok, out) = admin(
        &restored.url,
        Some(&keys),
        &["vault", "verify", "--expect", manifest_arg],
    );
    assert!(!ok, "a deleted row passed verify: {out}");
    assert!(
        out.contains(&format!(
            "table orders: {} rows, the manifest says {orders}",
            orders - 1
        )),
        "{out}"
    );
    // The report names rows, never their data.
    let report = card_scan::sweep(
        &[Haystack {
            place: "verify output".into(),
            bytes: out.into_bytes(),
            numbers_only: false,
        }],
        &card_scan::needles(&PANS.iter().map(|p| p.to_string()).collect::<Vec<_>>(), &[]),
    );
    assert!(report.is_empty(), "{report:?}");
}

both_backends!(a_backup_restores_into_a_fresh_database_that_verifies_and_damage_is_named);
