//! Keys and ciphertext binding (issue 12, findings 6 and 7; docs/security/keys.md).
//!
//! Finding 7 on both backends (`both_backends!`, a real engine over fresh SQLite and PostgreSQL
//! databases): a card moved to another customer by SQL, a ciphertext copied into another
//! customer's row, and a customer row renamed to another number all fail to pay and charge
//! nothing (the attacks of `testkit/src/attacks/vault.rs`); a row sealed as before the owner
//! binding (AAD version 1) still pays; the re-seal moves every row to AAD version 2, resumably;
//! it re-seals personal-account TOTP secrets to the new key too, bound to their user.
//!
//! Finding 6 against the real binary: `serve` runs with core dumps off (`/proc/<pid>/limits`,
//! and the start log reading the dumpable flag back); a wrapped key file without its KEK, a
//! plaintext key file without `keys.allow_plaintext`, and key or KEK files group or others may
//! read each refuse to start with a clear error; `admin keys wrap` upgrades a plaintext key
//! file in place and the wrapped file opens what the plaintext one sealed.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use oneclick_testkit as support;
use oneclick_testkit::both_backends;

use oneclick_actors::crypto::totp::TotpSecret;
use oneclick_actors::crypto::{card_aad, Keyring, LocalKek};
use oneclick_actors::engine::requests::{PaySavedCardRequest, SecretString};
use oneclick_actors::vault::keys::{key_status, rotate_batch, GetKeyStatus, RotateBatch};
use oneclick_actors::vault::DatabaseUrl;
use oneclick_actors::{Engine, Fault};
use support::attacks::vault as attacks;
use support::engine::*;

// ---- finding 7: ciphertexts bound to their owner ----------------------------------------------

async fn a_card_moved_to_another_customer_by_sql_charges_nothing(h: Harness) {
    let outcome = attacks::card_moved_to_another_customer_on(&h).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
    assert!(outcome.evidence.contains("fault"), "{}", outcome.evidence);
}

async fn an_operator_copying_a_ciphertext_into_another_customers_row_charges_nothing(h: Harness) {
    let outcome = attacks::ciphertext_swapped_by_operator_on(&h).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}

async fn a_customer_row_renamed_to_another_number_cannot_pay_with_its_cards(h: Harness) {
    let outcome = attacks::customer_row_renamed_on(&h).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}

/// A card an operator blocks in the database while its customer's actor still holds it as active:
/// the vault reads only active cards (on SQLite `ReadActiveCard`, after the lock; on PostgreSQL
/// with the lock), so the payment charges nothing and stores no approved order.
async fn a_card_blocked_by_sql_behind_a_cached_actor_charges_nothing(h: Harness) {
    let token = h.save_card(A, "dave", VISA_OK).await;
    pays(&h, "dave", &token, VISA_OK).await;
    let calls = h.acquirer.calls();
    let approved = || h.number("SELECT COUNT(*) AS n FROM orders WHERE state = 'Approved'");
    let approved_before = approved();
    assert_eq!(
        h.exec(&format!(
            "UPDATE cards SET state = 'blocked' WHERE token = '{token}'"
        )),
        1
    );
    // No `after_sql_change`: the actor's snapshot still lists the card as active.
    let paid = h.pay_saved(A, "dave", "10.00", &token, Some(CVC)).await;
    assert!(
        !paid.as_ref().is_ok_and(|p| p.is_approved()),
        "a blocked card paid: {paid:?}"
    );
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "the acquirer was asked to charge it"
    );
    assert_eq!(approved(), approved_before);
}

/// Rewrites a saved card as the code before the owner binding wrote it: sealed with the
/// token-only associated data, AAD version 1.
fn seal_as_before_the_owner_binding(h: &Harness, token: &str, pan: &str) {
    let sealed = h.keyring.seal(pan.as_bytes(), &card_aad(token)).unwrap();
    let hex: String = sealed.blob.iter().map(|b| format!("{b:02x}")).collect();
    let blob = match h.backend {
        Backend::Postgres => format!("decode('{hex}', 'hex')"),
        Backend::Sqlite => format!("X'{hex}'"),
    };
    assert_eq!(
        h.exec(&format!(
            "UPDATE cards SET pan_ciphertext = {blob}, key_version = {}, aad_version = 1 \
             WHERE token = '{token}'",
            sealed.key_version
        )),
        1
    );
}

/// One re-seal batch (`oneclick admin keys reseal`'s step) on its own thread, as the CLI runs it.
fn reseal_batch(h: &Harness, keyring: &std::sync::Arc<Keyring>, batch: i64) -> usize {
    let (pool, keyring) = (h.pool.clone(), keyring.clone());
    std::thread::spawn(move || {
        let mut conn = pool.get().unwrap();
        rotate_batch(&mut conn, &keyring, RotateBatch { batch }).unwrap()
    })
    .join()
    .unwrap()
}

fn cards_on_aad(h: &Harness, version: i32) -> i64 {
    h.number(&format!(
        "SELECT COUNT(*) AS n FROM cards WHERE aad_version = {version}"
    ))
}

async fn pays(h: &Harness, customer: &str, token: &str, pan: &str) {
    let paid = h
        .pay_saved(A, customer, "10.00", token, Some(CVC))
        .await
        .unwrap();
    assert!(paid.is_approved(), "{customer}: {paid:?}");
    assert_eq!(h.acquirer.last().last4, pan[pan.len() - 4..], "{customer}");
}

async fn new_cards_are_sealed_to_their_owner_and_an_old_aad_row_still_pays(h: Harness) {
    let token = h.save_card(A, "carol", VISA_OK).await;
    assert_eq!(cards_on_aad(&h, 2), 1, "a new card is bound to its owner");
    seal_as_before_the_owner_binding(&h, &token, VISA_OK);
    h.after_sql_change().await;
    assert_eq!(cards_on_aad(&h, 1), 1);
    pays(&h, "carol", &token, VISA_OK).await;
    let paid = h.token_pay(A, "carol", "10.00", &token).await.unwrap();
    assert!(paid.is_approved(), "{paid:?}");
}

async fn reseal_moves_every_card_to_the_owner_aad_and_they_still_pay(h: Harness) {
    let carol = h.save_card(A, "carol", VISA_OK).await;
    let eve = h.save_card(A, "eve", MASTERCARD_OK).await;
    seal_as_before_the_owner_binding(&h, &carol, VISA_OK);
    seal_as_before_the_owner_binding(&h, &eve, MASTERCARD_OK);
    let move_carols_card_to = |owner: &str| {
        h.exec(&format!(
            "UPDATE cards SET customer_id = (SELECT id FROM customers WHERE customer_number = \
             '{owner}') WHERE token = '{carol}'"
        ))
    };
    // The control: on AAD version 1 (token only) a moved row still pays — what finding 7
    // found, and what the re-seal closes.
    move_carols_card_to("eve");
    h.after_sql_change().await;
    pays(&h, "eve", &carol, VISA_OK).await;
    move_carols_card_to("carol");
    h.after_sql_change().await;

    let status = key_status(&mut h.pool.get().unwrap(), &h.keyring, GetKeyStatus).unwrap();
    assert_eq!(status.card_aad_versions, vec![(1, 2)]);
    let mut total = 0;
    loop {
        let n = reseal_batch(&h, &h.keyring, 1);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 2);
    let status = key_status(&mut h.pool.get().unwrap(), &h.keyring, GetKeyStatus).unwrap();
    assert_eq!(status.card_aad_versions, vec![(2, 2)]);
    h.after_sql_change().await;
    pays(&h, "carol", &carol, VISA_OK).await;
    pays(&h, "eve", &eve, MASTERCARD_OK).await;

    // Re-sealed, the moved row no longer pays, and nothing reaches the acquirer.
    move_carols_card_to("eve");
    h.after_sql_change().await;
    let calls = h.acquirer.calls();
    assert_eq!(
        fault_of(h.pay_saved(A, "eve", "10.00", &carol, Some(CVC)).await),
        Fault::Internal
    );
    assert_eq!(h.acquirer.calls(), calls, "nothing charged");
}

async fn reseal_resumes_after_being_stopped_halfway(h: Harness) {
    let mut cards = Vec::new();
    for customer in ["r-1", "r-2"] {
        for pan in [VISA_OK, MASTERCARD_OK, MIR_OK] {
            let token = h.save_card(A, customer, pan).await;
            seal_as_before_the_owner_binding(&h, &token, pan);
            cards.push((customer, token, pan));
        }
    }
    // Rotation to a new key at the same time: each batch does both.
    let rotated = std::sync::Arc::new(h.rotated_keyring());
    assert_eq!(reseal_batch(&h, &rotated, 2), 2);
    // Stopped here (the CLI killed); the rows done are on both new versions.
    let done_sql = "SELECT COUNT(*) AS n FROM cards WHERE aad_version = 2 AND key_version = 2";
    assert_eq!(h.number(done_sql), 2);
    let blobs = |h: &Harness| {
        h.texts(&format!(
            "SELECT {} AS v FROM cards WHERE aad_version = 2 ORDER BY id",
            match h.backend {
                Backend::Postgres => "encode(pan_ciphertext, 'hex')",
                Backend::Sqlite => "hex(pan_ciphertext)",
            }
        ))
    };
    let first_done = blobs(&h);
    // A new run picks up the rest and does not redo the first two.
    let mut total = 0;
    loop {
        let n = reseal_batch(&h, &rotated, 2);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 4);
    assert_eq!(h.number(done_sql), 6);
    assert_eq!(
        blobs(&h)[..2],
        first_done[..],
        "rows done before are left alone"
    );
    let status = key_status(&mut h.pool.get().unwrap(), &rotated, GetKeyStatus).unwrap();
    assert_eq!(status.card_aad_versions, vec![(2, 6)]);
    assert_eq!(status.versions, vec![(2, 6, 0)]);
    // The service restarted with the rotated keys pays every card with its own number.
    let settings = test_settings();
    let pool = DatabaseUrl::parse(&h.db.url)
        .unwrap()
        .pool((settings.vault_workers + settings.group_commit_writers) as u32 + 1)
        .unwrap();
    let engine = Engine::start(settings, pool, rotated.clone(), h.acquirer.clone());
    for (customer, token, pan) in &cards {
        let paid = engine
            .pay_saved_card(PaySavedCardRequest {
                order: h.order(A, &h.next_order(), "10.00", customer),
                token: token.clone(),
                cvc: Some(SecretString::new(CVC)),
            })
            .await
            .unwrap();
        assert!(paid.is_approved(), "{customer}: {paid:?}");
        assert_eq!(h.acquirer.last().last4, pan[pan.len() - 4..]);
    }
}

async fn reseal_moves_totp_secrets_to_the_new_key_and_their_codes_still_work(h: Harness) {
    use oneclick_actors::vault::accounts::*;
    use oneclick_actors::vault::audit::AuditActor;
    let secret = TotpSecret::generate().unwrap();
    {
        let mut conn = h.pool.get().unwrap();
        set_account_user_audited(&mut conn, A, "anna", "$argon2id$x", AuditActor::system())
            .unwrap();
        set_account_user_totp_audited(
            &mut conn,
            &h.keyring,
            A,
            "anna",
            Some(&secret),
            AuditActor::system(),
        )
        .unwrap();
    }
    let rotated = std::sync::Arc::new(h.rotated_keyring());
    let status = key_status(&mut h.pool.get().unwrap(), &rotated, GetKeyStatus).unwrap();
    assert_eq!(status.totp_secrets, vec![(1, 1)]);
    let mut total = 0;
    loop {
        let n = rotate_batch(
            &mut h.pool.get().unwrap(),
            &rotated,
            RotateBatch { batch: 10 },
        )
        .unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 1);
    let status = key_status(&mut h.pool.get().unwrap(), &rotated, GetKeyStatus).unwrap();
    assert_eq!(status.totp_secrets, vec![(2, 1)]);
    // Under version 2 now: the old keyring no longer opens it, the rotated one accepts its code.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let check = |keyring: &Keyring| {
        accept_totp_code(
            &mut h.pool.get().unwrap(),
            keyring,
            AcceptTotpCode {
                merchant_id: A,
                login: "anna".into(),
                code: SecretString::new(secret.code_at(now).unwrap().as_str()),
                unix_secs: now,
            },
        )
    };
    assert!(check(&h.keyring).is_err(), "no longer under version 1");
    assert_eq!(check(&rotated).unwrap(), CodeCheck::Accepted);
}

both_backends!(
    reseal_moves_totp_secrets_to_the_new_key_and_their_codes_still_work,
    a_card_moved_to_another_customer_by_sql_charges_nothing,
    a_card_blocked_by_sql_behind_a_cached_actor_charges_nothing,
    an_operator_copying_a_ciphertext_into_another_customers_row_charges_nothing,
    a_customer_row_renamed_to_another_number_cannot_pay_with_its_cards,
    new_cards_are_sealed_to_their_owner_and_an_old_aad_row_still_pays,
    reseal_moves_every_card_to_the_owner_aad_and_they_still_pay,
    reseal_resumes_after_being_stopped_halfway,
);

// ---- finding 6: keys and core dumps, against the binary ---------------------------------------

/// Runs `oneclick serve` with `env` (SQLite in `dir`, NATS on a closed port: a start that gets
/// past the keys fails at NATS) and returns its stderr; it must exit by itself.
fn serve_until_it_stops(dir: &Path, env: &[(&str, String)]) -> String {
    let out = Command::new(support::nats::bin())
        .arg("serve")
        .env(
            "ONECLICK__DATABASE__URL",
            format!("sqlite://{}", dir.join("vault.db").display()),
        )
        .env("ONECLICK__NATS__URL", "nats://127.0.0.1:1")
        .env("ONECLICK__HTTP__LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve cannot run without NATS");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Passed the keys: the start failed later, at NATS.
fn got_past_the_keys(stderr: &str) -> bool {
    stderr.contains("connecting to NATS")
}

fn admin(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    Command::new(support::nats::bin())
        .arg("admin")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

fn admin_ok(args: &[&str], env: &[(&str, String)]) -> String {
    let out = admin(args, env);
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_wrapped_key_file_without_its_kek_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, kek) = (dir.path().join("keys"), dir.path().join("kek"));
    admin_ok(
        &[
            "keys",
            "generate",
            "--out",
            &path(&keys),
            "--kek-file",
            &path(&kek),
            "--new-kek",
        ],
        &[],
    );
    let text = std::fs::read_to_string(&keys).unwrap();
    assert!(text.contains("format = wrapped-v1"), "{text}");
    let stderr = serve_until_it_stops(dir.path(), &[("ONECLICK__KEYS__FILE", path(&keys))]);
    assert!(
        stderr.contains("is wrapped") && stderr.contains("ONECLICK__KEYS__KEK_FILE"),
        "{stderr}"
    );
    assert!(!got_past_the_keys(&stderr), "{stderr}");
    // A wrong KEK: refused, naming the entry, not the key.
    let other = dir.path().join("other-kek");
    admin_ok(&["keys", "generate-kek", "--out", &path(&other)], &[]);
    let stderr = serve_until_it_stops(
        dir.path(),
        &[
            ("ONECLICK__KEYS__FILE", path(&keys)),
            ("ONECLICK__KEYS__KEK_FILE", path(&other)),
        ],
    );
    assert!(stderr.contains("wrong KEK"), "{stderr}");
    // The control: with its KEK the start gets past the keys.
    for env in [
        vec![
            ("ONECLICK__KEYS__FILE", path(&keys)),
            ("ONECLICK__KEYS__KEK_FILE", path(&kek)),
        ],
        vec![
            ("ONECLICK__KEYS__FILE", path(&keys)),
            (
                "ONECLICK__KEYS__KEK",
                std::fs::read_to_string(&kek)
                    .unwrap()
                    .lines()
                    .last()
                    .unwrap()
                    .to_string(),
            ),
        ],
    ] {
        let stderr = serve_until_it_stops(dir.path(), &env);
        assert!(got_past_the_keys(&stderr), "{stderr}");
    }
}

#[test]
fn a_plaintext_key_file_is_refused_unless_plaintext_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    admin_ok(
        &["keys", "generate", "--out", &path(&keys), "--plaintext"],
        &[],
    );
    let stderr = serve_until_it_stops(dir.path(), &[("ONECLICK__KEYS__FILE", path(&keys))]);
    assert!(
        stderr.contains("plaintext") && stderr.contains("keys wrap"),
        "{stderr}"
    );
    assert!(!got_past_the_keys(&stderr), "{stderr}");
    let stderr = serve_until_it_stops(
        dir.path(),
        &[
            ("ONECLICK__KEYS__FILE", path(&keys)),
            ("ONECLICK__KEYS__ALLOW_PLAINTEXT", "true".into()),
        ],
    );
    assert!(got_past_the_keys(&stderr), "{stderr}");
}

#[test]
fn key_and_kek_files_that_group_or_others_may_read_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, kek) = (dir.path().join("keys"), dir.path().join("kek"));
    admin_ok(
        &[
            "keys",
            "generate",
            "--out",
            &path(&keys),
            "--kek-file",
            &path(&kek),
            "--new-kek",
        ],
        &[],
    );
    let env = [
        ("ONECLICK__KEYS__FILE", path(&keys)),
        ("ONECLICK__KEYS__KEK_FILE", path(&kek)),
    ];
    assert!(got_past_the_keys(&serve_until_it_stops(dir.path(), &env)));
    for (file, mode) in [(&keys, 0o640), (&keys, 0o604), (&kek, 0o644), (&kek, 0o660)] {
        chmod(file, mode);
        let stderr = serve_until_it_stops(dir.path(), &env);
        assert!(
            stderr.contains("chmod 600") && stderr.contains(&path(file)),
            "{} {mode:o}: {stderr}",
            file.display()
        );
        assert!(!got_past_the_keys(&stderr), "{stderr}");
        chmod(file, 0o600);
    }
}

#[test]
fn keys_wrap_upgrades_a_plaintext_key_file_in_place_and_rotation_keeps_it_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, wrapped, kek) = (
        dir.path().join("keys.txt"),
        dir.path().join("keys.wrapped"),
        dir.path().join("kek"),
    );
    // Today's deployment: a plaintext key file, and a card sealed under it.
    admin_ok(
        &["keys", "generate", "--out", &path(&plain), "--plaintext"],
        &[],
    );
    let before = Keyring::load_file(&plain).unwrap();
    let sealed = before.seal(b"4111111111111111", b"row").unwrap();
    admin_ok(&["keys", "generate-kek", "--out", &path(&kek)], &[]);
    admin_ok(
        &[
            "keys",
            "wrap",
            "--kek-file",
            &path(&kek),
            "--in",
            &path(&plain),
            "--out",
            &path(&wrapped),
        ],
        &[],
    );
    // No key of the plaintext file appears in the wrapped one.
    let plain_text = std::fs::read_to_string(&plain).unwrap();
    let wrapped_text = std::fs::read_to_string(&wrapped).unwrap();
    for line in plain_text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.split_once('=') {
            if name.trim() != "current" {
                assert!(!wrapped_text.contains(value.trim()), "{name} in the clear");
            }
        }
    }
    let kek_key = LocalKek::load_file(&kek).unwrap();
    let after = Keyring::load_file_with(&wrapped, Some(&kek_key)).unwrap();
    assert_eq!(
        after
            .open(sealed.key_version, &sealed.blob, b"row")
            .unwrap()
            .as_slice(),
        b"4111111111111111"
    );
    assert_eq!(
        after.fingerprint(b"4111111111111111"),
        before.fingerprint(b"4111111111111111"),
        "fingerprints (R11) survive the upgrade"
    );
    // Never over an existing file.
    assert!(!admin(
        &[
            "keys",
            "wrap",
            "--kek-file",
            &path(&kek),
            "--in",
            &path(&plain),
            "--out",
            &path(&wrapped)
        ],
        &[]
    )
    .status
    .success());
    // Rotation step 1 on the wrapped file, with the configured KEK: still wrapped, old key kept.
    let env = [("ONECLICK__KEYS__KEK_FILE", path(&kek))];
    admin_ok(&["keys", "add", "--file", &path(&wrapped)], &env);
    let rotated = Keyring::load_file_with(&wrapped, Some(&kek_key)).unwrap();
    assert_eq!(rotated.current_version(), 2);
    assert!(std::fs::read_to_string(&wrapped)
        .unwrap()
        .contains("format = wrapped-v1"));
    assert!(rotated.open(1, &sealed.blob, b"row").is_ok());
    // And the service starts on it.
    let stderr = serve_until_it_stops(
        dir.path(),
        &[
            ("ONECLICK__KEYS__FILE", path(&wrapped)),
            ("ONECLICK__KEYS__KEK_FILE", path(&kek)),
        ],
    );
    assert!(got_past_the_keys(&stderr), "{stderr}");
}

/// `Max core file size` of `/proc/<pid>/limits`: (soft, hard).
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let mut fields = line["Max core file size".len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_with_core_dumps_disabled() {
    let stack = support::nats::Stack::start().await;
    let pid = stack.app.pid().unwrap();
    // Soft and hard: the process cannot raise it again (the usual default hard limit is
    // unlimited, so without the fix this reads `unlimited`).
    assert_eq!(core_limit(pid), ("0".into(), "0".into()));
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .contains("State:"),
        "the running service's status is readable"
    );
    // The dumpable flag as the process read it back from the kernel after clearing it.
    let log = stack.app.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("core dumps disabled"))
        .unwrap_or_else(|| panic!("no start line about core dumps:\n{log}"));
    assert!(line.contains("Some(false)"), "{line}");
}

/// The real uid of process `pid` (`Uid:` of its status) and the owner of its `/proc` entries:
/// the kernel gives a non-dumpable process's `/proc/<pid>` to root.
fn uid_and_proc_owner(pid: u32) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let owner = std::fs::metadata(format!("/proc/{pid}/status")).ok()?.uid();
    Some((uid, owner))
}

fn running_as_root() -> bool {
    uid_and_proc_owner(std::process::id()).is_some_and(|(uid, _)| uid == 0)
}

/// As an unprivileged user (what the container runs as), the kernel itself shows `serve` is
/// not dumpable: its `/proc/<pid>` belongs to root, not to its user, so that user can neither
/// dump it nor attach a debugger. The control: a plain process of that user owns its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_as_an_unprivileged_user_is_not_dumpable() {
    const NOBODY: u32 = 65534;
    if !running_as_root() {
        eprintln!("skipped: switching to an unprivileged user needs root");
        return;
    }
    let nats = support::nats::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let work = dir.path().join("run");
    std::fs::create_dir(&work).unwrap();
    let (keys, kek) = (work.join("keys"), work.join("kek"));
    admin_ok(
        &[
            "keys",
            "generate",
            "--out",
            &path(&keys),
            "--kek-file",
            &path(&kek),
            "--new-kek",
        ],
        &[],
    );
    for p in [&work, &keys, &kek] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let as_nobody = |program: &str| {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            program,
        ]);
        c
    };
    let log = dir.path().join("serve.log");
    let mut serve = as_nobody(support::nats::bin())
        .arg("serve")
        .env(
            "ONECLICK__DATABASE__URL",
            format!("sqlite://{}", work.join("vault.db").display()),
        )
        .env("ONECLICK__KEYS__FILE", path(&keys))
        .env("ONECLICK__KEYS__KEK_FILE", path(&kek))
        .env("ONECLICK__NATS__URL", nats.url())
        .env("ONECLICK__NATS__PREFIX", "dumpable")
        .env("ONECLICK__HTTP__LISTEN", "127.0.0.1:0")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut control = as_nobody("sleep").arg("30").spawn().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let seen = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("core dumps disabled") {
            break uid_and_proc_owner(serve.id());
        }
        assert!(
            serve.try_wait().unwrap().is_none(),
            "serve exited early:\n{text}"
        );
        assert!(std::time::Instant::now() < until, "no start line:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let control_seen = uid_and_proc_owner(control.id());
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = control.kill();
    let _ = control.wait();
    assert_eq!(
        control_seen,
        Some((NOBODY, NOBODY)),
        "the control: a dumpable process of that user owns its /proc entries"
    );
    assert_eq!(
        seen,
        Some((NOBODY, 0)),
        "serve runs as that user, its /proc entries belong to root: not dumpable"
    );
}
