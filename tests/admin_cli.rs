//! `oneclick admin` never surprises (issue 16 item 5), run as the real binary against fresh
//! SQLite and PostgreSQL databases: `admin merchant` changes only the fields named and prints
//! them (`field: old → new`); `admin merchant show` prints no secret; the signature key changes
//! only by `rotate-signing-key`, whose overlap the running service honours (old-key orders pass
//! until it ends, then fail with 3/10); every change is in `admin audit` with the OS user.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use oneclick_testkit as support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use support::engine::{Backend, TestDb};
use support::nats::{bin, fault_of, Stack, DEMO_KEY_B64, DEMO_MERCHANT, DEMO_PASSWORD};

/// A fresh vault with keys and the demo merchant, and the environment `oneclick admin` needs.
struct Vault {
    env: Vec<(String, String)>,
    db: TestDb,
    dir: tempfile::TempDir,
}

impl Vault {
    fn new(backend: Backend) -> Vault {
        let db = TestDb::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.txt");
        let kek = dir.path().join("kek.txt");
        let vault = Vault {
            env: vec![
                ("ONECLICK__DATABASE__URL".into(), db.url.clone()),
                ("ONECLICK__KEYS__FILE".into(), keys.display().to_string()),
                ("ONECLICK__KEYS__KEK_FILE".into(), kek.display().to_string()),
                ("USER".into(), "auditor".into()),
            ],
            db,
            dir,
        };
        vault.ok(&[
            "keys",
            "generate",
            "--out",
            &keys.display().to_string(),
            "--kek-file",
            &kek.display().to_string(),
            "--new-kek",
        ]);
        vault.ok(&["demo-seed"]);
        vault
    }

    fn admin(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("admin")
            .args(args)
            .env_remove("ONECLICK_ADMIN_PASSWORD")
            .envs(self.env.iter().cloned())
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(!out.status.success(), "admin {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn show(&self, id: i64) -> Value {
        serde_json::from_str(&self.ok(&["merchant", "show", "--id", &id.to_string()])).unwrap()
    }

    fn audit(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn signature_key_in_db(&self) -> String {
        support::engine::RawConn::open(&self.db)
            .texts("SELECT signature_key AS v FROM merchants WHERE id = 452739")
            .into_iter()
            .next()
            .flatten()
            .unwrap()
    }
}

/// `name::on_sqlite` and `name::on_postgres` for a `fn name(backend: Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn on_sqlite() {
                super::$name(super::Backend::Sqlite);
            }
            #[test]
            fn on_postgres() {
                super::$name(super::Backend::Postgres);
            }
        }
    )+};
}

on_both_backends!(
    updating_one_merchant_field_prints_it_and_leaves_every_other_setting_and_the_signing_key,
    merchant_show_prints_every_setting_and_no_secret,
    creating_needs_a_name_and_an_existing_merchant_refuses_a_new_signature_key,
    rotate_signing_key_prints_what_changed_and_keeps_the_old_key_for_the_overlap,
    every_admin_change_is_in_admin_audit_with_the_os_user,
    account_user_totp_enrols_prints_the_uri_once_removes_and_audits_without_the_secret,
);

fn account_user_totp_enrols_prints_the_uri_once_removes_and_audits_without_the_secret(
    backend: Backend,
) {
    let v = Vault::new(backend);
    let anna = ["account-user", "--merchant", "452739", "--login", "anna"];
    let with =
        |extra: &[&'static str]| -> Vec<&str> { anna.iter().chain(extra).copied().collect() };
    // Nothing to do, both at once, or a second factor for a user who does not exist: refused.
    assert!(v.refused(&anna).contains("required"));
    assert!(v
        .refused(&with(&["--totp", "--no-totp"]))
        .contains("cannot be used with"));
    assert!(v.refused(&with(&["--totp"])).contains("--password"));
    // Created and enrolled in one command: the URI printed once, with the app defaults.
    let out = v.ok(&with(&["--password", "anna-pass-1", "--totp"]));
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/oneclick:anna%40452739?"))
        .unwrap_or_else(|| panic!("{out}"));
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32: {uri}");
    assert!(
        uri.contains("issuer=oneclick") && !uri.contains("digits=") && !uri.contains("period=")
    );
    // A new password keeps the second factor; --no-totp removes it, once.
    v.ok(&with(&["--password", "anna-pass-2"]));
    let sealed = || {
        support::engine::RawConn::open(&v.db).numbers(
            "SELECT COUNT(*) AS n FROM account_users WHERE login = 'anna' AND totp_secret IS NOT NULL",
        )
    };
    assert_eq!(sealed(), vec![1]);
    assert!(v.ok(&with(&["--no-totp"])).contains("TOTP removed"));
    assert_eq!(sealed(), vec![0]);
    assert!(v.ok(&with(&["--no-totp"])).contains("nothing changed"));
    let rows = v.audit(&["--merchant", "452739"]);
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .filter(|a| a.starts_with("account."))
        .collect();
    assert_eq!(
        actions,
        [
            "account.user_set",
            "account.totp_enrolled",
            "account.user_set",
            "account.totp_removed"
        ]
    );
    let enrolled = rows
        .iter()
        .find(|r| r["action"] == "account.totp_enrolled")
        .unwrap();
    assert_eq!(enrolled["actor"], "admin-cli:auditor");
    assert_eq!(enrolled["detail"]["totp"], "set");
    assert_eq!(enrolled["detail"]["key_version"], 1);
    let text = v.ok(&["audit"]);
    assert!(
        !text.contains(secret) && !text.contains("anna-pass"),
        "{text}"
    );
}

fn updating_one_merchant_field_prints_it_and_leaves_every_other_setting_and_the_signing_key(
    backend: Backend,
) {
    let v = Vault::new(backend);
    let before = v.show(DEMO_MERCHANT);
    let key_before = v.signature_key_in_db();
    // The command of issue 16 that used to reset name, threshold, limits and the key.
    let out = v.ok(&["merchant", "--id", "452739", "--need-cvc", "false"]);
    assert_eq!(out, "merchant 452739 updated\n  need_cvc: true → false\n");
    let mut expected = before.clone();
    expected["need_cvc"] = json!(false);
    assert_eq!(v.show(DEMO_MERCHANT), expected);
    assert_eq!(v.signature_key_in_db(), key_before);
    assert_eq!(key_before, DEMO_KEY_B64);

    // Two fields and one currency's limit; the other settings stay.
    let out = v.ok(&[
        "merchant",
        "--id",
        "452739",
        "--threshold",
        "3",
        "--name",
        "Shop 2",
        "--limit",
        "RUB:2000.00:-",
    ]);
    assert_eq!(
        out,
        "merchant 452739 updated\n  name: Demo shop → Shop 2\n  list_threshold: 1 → 3\n  \
         limit.RUB.day_minor: 10000000 → 200000\n  limit.RUB.week_minor: 50000000 → unlimited\n"
    );
    let after = v.show(DEMO_MERCHANT);
    assert_eq!(after["mode"], before["mode"]);
    assert_eq!(after["time_zone"], before["time_zone"]);
    assert_eq!(after["mit_cof"], before["mit_cof"]);
    assert_eq!(after["need_cvc"], json!(false));
    assert_eq!(
        after["limits"]["RUB"],
        json!({"day": "2000.00", "week": "unlimited"})
    );
    assert_eq!(v.signature_key_in_db(), key_before);
    // The same again: nothing changes, nothing is recorded.
    assert_eq!(
        v.ok(&["merchant", "--id", "452739", "--threshold", "3"]),
        "merchant 452739: nothing changed\n"
    );
}

fn merchant_show_prints_every_setting_and_no_secret(backend: Backend) {
    let v = Vault::new(backend);
    let text = v.ok(&["merchant", "show", "--id", "452739"]);
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["signature_key"], "set");
    assert_eq!(shown["previous_signature_key"], "none");
    assert_eq!(shown["users"], json!({"demo": {"password": "set"}}));
    assert_eq!(shown["name"], "Demo shop");
    assert_eq!(shown["list_threshold"], 1);
    assert_eq!(
        shown["limits"]["RUB"],
        json!({"day": "100000.00", "week": "500000.00"})
    );
    let decoded = String::from_utf8(BASE64.decode(DEMO_KEY_B64).unwrap()).unwrap();
    for secret in [DEMO_KEY_B64, decoded.as_str(), DEMO_PASSWORD, "$argon2"] {
        assert!(!text.contains(secret), "show prints a secret: {text}");
    }
    // Control: the key is in the database, so the probe above would have seen it printed.
    assert_eq!(v.signature_key_in_db(), DEMO_KEY_B64);
    assert!(v
        .refused(&["merchant", "show", "--id", "9"])
        .contains("unknown merchant 9"));
}

fn creating_needs_a_name_and_an_existing_merchant_refuses_a_new_signature_key(backend: Backend) {
    let v = Vault::new(backend);
    let err = v.refused(&["merchant", "--id", "77", "--need-cvc", "false"]);
    assert!(err.contains("creating it needs --name"), "{err}");
    let key = BASE64.encode(b"merchant-77-key");
    let out = v.ok(&[
        "merchant",
        "--id",
        "77",
        "--name",
        "Shop 77",
        "--signature-key",
        &key,
    ]);
    assert!(
        out.starts_with("merchant 77 created\n  name: (none) → Shop 77\n"),
        "{out}"
    );
    assert!(out.contains("  signature_key: (none) → set\n"), "{out}");
    assert!(!out.contains(&key), "a given key is not echoed: {out}");
    let generated = v.ok(&["merchant", "--id", "78", "--name", "Shop 78"]);
    assert!(
        generated.contains("generated signature key (base64, shown once): "),
        "{generated}"
    );
    let err = v.refused(&["merchant", "--id", "77", "--signature-key", &key]);
    assert!(err.contains("rotate-signing-key"), "{err}");
}

fn rotate_signing_key_prints_what_changed_and_keeps_the_old_key_for_the_overlap(backend: Backend) {
    let v = Vault::new(backend);
    let out = v.ok(&[
        "merchant",
        "rotate-signing-key",
        "--id",
        "452739",
        "--overlap",
        "1h",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "merchant 452739: signing key rotated");
    assert_eq!(lines[1], "  signature_key: set → set (new)");
    assert!(
        lines[2].starts_with("  previous_signature_key_verifies_until: (none) → 20"),
        "{out}"
    );
    let new_key = lines[3]
        .strip_prefix("new signature key (base64, shown once): ")
        .unwrap();
    assert_eq!(BASE64.decode(new_key).unwrap().len(), 32);
    assert_eq!(v.signature_key_in_db(), new_key);
    let shown = v.show(DEMO_MERCHANT);
    assert!(
        shown["previous_signature_key"]
            .as_str()
            .unwrap()
            .starts_with("set, verifies until 20"),
        "{shown}"
    );
    let previous = support::engine::RawConn::open(&v.db)
        .texts("SELECT previous_signature_key AS v FROM merchants WHERE id = 452739");
    assert_eq!(previous, vec![Some(DEMO_KEY_B64.to_string())]);
    assert!(v
        .refused(&[
            "merchant",
            "rotate-signing-key",
            "--id",
            "452739",
            "--overlap",
            "soon"
        ])
        .contains("--overlap"));
    assert!(v
        .refused(&["merchant", "rotate-signing-key", "--id", "9"])
        .contains("unknown merchant 9"));
}

fn every_admin_change_is_in_admin_audit_with_the_os_user(backend: Backend) {
    let v = Vault::new(backend);
    v.ok(&["merchant", "--id", "452739", "--mit-cof", "false"]);
    v.ok(&[
        "merchant",
        "rotate-signing-key",
        "--id",
        "452739",
        "--overlap",
        "0",
    ]);
    v.ok(&[
        "user",
        "--merchant",
        "452739",
        "--login",
        "ops2",
        "--password",
        "pw-of-ops2",
    ]);
    let union = v.ok(&["union", "create", "--kind", "merchant_group", "--name", "G"]);
    v.ok(&[
        "union",
        "join",
        "--merchant",
        "452739",
        "--union",
        union.trim(),
    ]);
    v.ok(&["keys", "add", "--file", &v.env[1].1]);
    // NATS identities live in a file, not the vault: their changes are recorded all the same,
    // naming the merchant and never the password or its hash.
    let users_file = v.dir.path().join("merchants.conf");
    let users_file = users_file.to_str().unwrap();
    let created = v.ok(&[
        "merchant",
        "nats-identity",
        "create",
        "--id",
        "452739",
        "--file",
        users_file,
    ]);
    v.ok(&["merchant", "nats-identity", "list", "--file", users_file]);
    v.ok(&[
        "merchant",
        "nats-identity",
        "revoke",
        "--id",
        "452739",
        "--file",
        users_file,
    ]);
    let rows = v.audit(&[]);
    let seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().into(),
                r["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        "merchant.demo_seeded",
        "merchant.user_set",
        "merchant.updated",
        "merchant.signing_key_rotated",
        "merchant.user_set",
        "union.created",
        "union.joined",
        "key.added",
        "merchant.nats_identity_set",
        "merchant.nats_identity_revoked",
    ]
    .iter()
    .map(|a| ("admin-cli:auditor".to_string(), a.to_string()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        rows[2]["detail"]["changes"][0],
        json!({"field": "mit_cof", "old": "true", "new": "false"})
    );
    assert_eq!(rows[4]["detail"]["login"], "ops2");
    assert_eq!(rows[8]["merchant_id"], 452739);
    assert_eq!(rows[8]["detail"]["file"], users_file);
    assert_eq!(rows[8]["detail"]["replace"], false);
    let text = v.ok(&["audit"]);
    // The NATS password was printed once by `create`; it is a long random string.
    let nats_password = created
        .lines()
        .find_map(|l| l.trim().strip_prefix("password (shown once): "))
        .unwrap_or_else(|| panic!("no password line: {created}"))
        .to_string();
    assert!(nats_password.len() >= 20, "{created}");
    assert!(
        !text.contains("pw-of-ops2")
            && !text.contains("$argon2")
            && !text.contains("$2b$")
            && !text.contains(&nats_password)
            && !text.contains(DEMO_KEY_B64),
        "{text}"
    );
    // Filters: a merchant, a time, a limit (the newest rows).
    assert_eq!(v.audit(&["--merchant", "452739"]).len(), 8);
    assert_eq!(v.audit(&["--since", "2999-01-01"]).len(), 0);
    assert_eq!(v.audit(&["--since", "2000-01-01T00:00:00Z"]).len(), 10);
    let last = v.audit(&["--limit", "1"]);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["action"], "merchant.nats_identity_revoked");
    assert!(v
        .refused(&["audit", "--since", "yesterday"])
        .contains("--since"));
}

/// The running service honours a rotation made by the CLI: both keys pass during the overlap,
/// then only the new one; the old one answers 3/10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cli_rotation_the_service_accepts_the_old_key_until_the_overlap_ends_then_answers_3_10(
) {
    let stack = Stack::start().await;
    let rotated_at = Instant::now();
    let out = stack.app.admin(&[
        "merchant",
        "rotate-signing-key",
        "--id",
        "452739",
        "--overlap",
        "5s",
    ]);
    let new_key = BASE64
        .decode(out.lines().last().unwrap().rsplit(' ').next().unwrap())
        .unwrap();
    let mut n = 0;
    let mut offer = |key: Option<&[u8]>| {
        n += 1;
        let order_number = format!("rot-{n}");
        let mut body = support::nats::order(&order_number, "10.00", "rot-customer");
        if let Some(key) = key {
            let msg = oneclick_actors::domain::signature::message(
                "452739",
                &order_number,
                "10.00",
                "RUB",
                "rot-customer",
            );
            body["signature"] = json!(oneclick_actors::domain::signature::sign(key, &msg));
        }
        stack.gw("offer", body)
    };
    // Old key (the demo key): accepted at once and throughout the overlap.
    let reply = offer(None).await;
    assert_eq!(fault_of(&reply), None, "{reply}");
    // The new key: accepted once the service's merchant cache (1 s) has reloaded.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let reply = offer(Some(&new_key)).await;
        if fault_of(&reply).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "new key never accepted: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = offer(None).await;
    assert_eq!(
        fault_of(&reply),
        None,
        "old key inside the overlap: {reply}"
    );
    assert!(
        rotated_at.elapsed() < Duration::from_secs(5),
        "the machine was too slow to observe the overlap"
    );
    let overlap_end = rotated_at + Duration::from_secs(5) + Duration::from_millis(300);
    tokio::time::sleep_until(overlap_end.into()).await;
    let reply = offer(None).await;
    assert_eq!(
        fault_of(&reply),
        Some((3, 10)),
        "old key after the overlap: {reply}"
    );
    let reply = offer(Some(&new_key)).await;
    assert_eq!(fault_of(&reply), None, "new key after the overlap: {reply}");
}
