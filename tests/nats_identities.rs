//! Issue 16 item 6: merchant onboarding without hand-editing nats.conf. Every test runs the real
//! `oneclick admin merchant nats-identity` on the generated users file of a real nats-server
//! started with the SHIPPED configuration (`NatsServer::start_shipped`: nats.conf includes the
//! generated merchants.conf, which includes the shipped service-users.conf), and reloads it with
//! SIGHUP as an operator would. Attacker views: a new merchant reaching another merchant's subjects
//! or inbox, ids that would inject config syntax, a file readable by others or edited by hand, two
//! admins at once, a revoked identity still connected.

use oneclick_testkit as support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use support::nats::{connect_as, nats_identity, NatsServer};

/// Creates merchant `id`'s identity in `server`'s users file; returns its password.
fn create(server: &NatsServer, id: i64) -> String {
    let out_file = server.store.path().join(format!("m{id}.password"));
    let (ok, out) = nats_identity(
        &server.merchants_file(),
        &[
            "create",
            "--id",
            &id.to_string(),
            "--password-out",
            out_file.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(ok, "create --id {id}: {out}");
    assert!(
        out.contains("kill -s HUP nats") && out.contains("--signal reload"),
        "the operator is told how NATS picks it up: {out}"
    );
    std::fs::read_to_string(&out_file)
        .expect("password file")
        .trim()
        .to_string()
}

async fn connect_merchant(
    server: &NatsServer,
    id: i64,
    password: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_as(
        &server.url(),
        &format!("merchant_{id}"),
        password,
        Some(&format!("_INBOX.merchant_{id}")),
    )
    .await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// How long to wait for a message that must arrive, and for one that must not.
const MUST_ARRIVE: Duration = Duration::from_secs(10);
const MUST_NOT_ARRIVE: Duration = Duration::from_millis(700);
/// A message that must arrive is published again this often until it does: core NATS delivers
/// at most once, so one message lost to a connection hiccup of a loaded machine is not a
/// permission failure. What must not arrive is published once and waited for.
const REPUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Publishes `payload` to `subject` from `from` (flushed).
async fn publish(from: &async_nats::Client, subject: &str) {
    from.publish(subject.to_string(), "{}".into())
        .await
        .expect("publish");
    from.flush().await.expect("flush");
}

/// Whether a message on `subject` reaches `sub` when `from` publishes it there: published once
/// and waited for [`MUST_NOT_ARRIVE`] when it must not arrive, again every [`REPUBLISH_EVERY`]
/// for up to [`MUST_ARRIVE`] when it must. Messages on other subjects (copies of an earlier
/// positive check) are skipped.
async fn arrives(
    from: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &str,
    must: bool,
) -> bool {
    let until = Instant::now() + if must { MUST_ARRIVE } else { MUST_NOT_ARRIVE };
    publish(from, subject).await;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let wait = if must {
            left.min(REPUBLISH_EVERY)
        } else {
            left
        };
        match tokio::time::timeout(wait, sub.next()).await {
            Ok(Some(m)) if m.subject.as_str() == subject => return true,
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(_) if must => publish(from, subject).await,
            Err(_) => {}
        }
    }
}

/// Whether `merchant`, subscribed to `subject`, receives what the service publishes there.
async fn inbox_delivers(
    service: &async_nats::Client,
    merchant: &async_nats::Client,
    subject: &str,
    must: bool,
) -> bool {
    let mut sub = merchant
        .subscribe(subject.to_string())
        .await
        .expect("subscribe");
    merchant.flush().await.expect("flush");
    arrives(service, &mut sub, subject, must).await
}

/// What a failed check of `server` shows: its log and how often `client` (re)connected.
fn diagnose(server: &NatsServer, client: &async_nats::Client) -> String {
    format!(
        "client connects: {} (more than 1: it reconnected), state {:?}; server log:\n{}",
        client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        client.connection_state(),
        server.log_text()
    )
}

#[tokio::test]
async fn a_new_merchant_identity_is_picked_up_on_reload_and_reaches_only_its_own_subjects() {
    let server = NatsServer::start_shipped();
    let users = server.users.clone().expect("shipped users");
    // 45273 is a prefix of the example merchant's id 452739: the subjects must not overlap.
    let password = create(&server, 45273);
    let text = std::fs::read_to_string(server.merchants_file()).expect("users file");
    assert!(!text.contains(&password), "the file holds no password");
    assert!(
        text.contains("merchant_45273, password: \"$2a$11$"),
        "{text}"
    );
    assert!(
        connect_merchant(&server, 45273, &password).await.is_err(),
        "not before the reload"
    );
    server.reload();
    let merchant = connect_merchant(&server, 45273, &password)
        .await
        .expect("the new merchant connects after the reload");
    // The example merchant, generated the same way, still works beside it.
    connect_merchant(&server, 452739, &users.merchant_452739)
        .await
        .expect("merchant_452739 still connects");

    let service = connect_as(&server.url(), "oneclick", &users.oneclick, None)
        .await
        .expect("service user");
    let mut requests = service
        .subscribe("oneclick.v1.merchant.>")
        .await
        .expect("service subscribes");
    service.flush().await.expect("flush");
    // The positive controls first: its own inbox receives, its own request subject arrives; then
    // another merchant's subject and the gateway's do not.
    assert!(
        inbox_delivers(&service, &merchant, "_INBOX.merchant_45273.x", true).await,
        "its own inbox receives; {}",
        diagnose(&server, &merchant)
    );
    for (subject, allowed) in [
        ("oneclick.v1.merchant.45273.token.list", true),
        ("oneclick.v1.merchant.452739.token.list", false),
        ("oneclick.v1.gw.offer", false),
    ] {
        let got = arrives(&merchant, &mut requests, subject, allowed).await;
        match (allowed, got) {
            (true, false) => panic!(
                "its own subject {subject} did not arrive; {}",
                diagnose(&server, &merchant)
            ),
            (false, true) => panic!("merchant_45273 published to {subject}"),
            _ => {}
        }
    }
    // The example merchant's inbox does not receive.
    assert!(
        !inbox_delivers(&service, &merchant, "_INBOX.merchant_452739.x", false).await,
        "merchant_45273 read merchant 452739's inbox"
    );
    let log = server.log_text();
    assert!(
        log.contains(
            "Publish Violation - User \"merchant_45273\", Subject \"oneclick.v1.merchant.452739.token.list\""
        ) && log.contains(
            "Subscription Violation - User \"merchant_45273\", Subject \"_INBOX.merchant_452739.x\""
        ),
        "the server refused both:\n{log}"
    );
}

#[tokio::test]
async fn a_revoked_identity_is_disconnected_at_the_reload_and_refused_after_it() {
    let server = NatsServer::start_shipped();
    let password = create(&server, 452741);
    server.reload();
    let merchant = connect_merchant(&server, 452741, &password)
        .await
        .expect("connects");
    let (ok, out) = nats_identity(&server.merchants_file(), &["revoke", "--id", "452741"], &[]);
    assert!(ok, "revoke: {out}");
    let (_, listed) = nats_identity(&server.merchants_file(), &["list"], &[]);
    assert!(
        !listed.contains("merchant_452741") && listed.contains("merchant_452739"),
        "{listed}"
    );
    server.reload();
    let until = Instant::now() + Duration::from_secs(5);
    while merchant.connection_state() == async_nats::connection::State::Connected {
        assert!(
            Instant::now() < until,
            "the revoked merchant's open connection survived the reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connect_merchant(&server, 452741, &password).await.is_err(),
        "a revoked identity is refused"
    );
    let (ok, out) = nats_identity(&server.merchants_file(), &["revoke", "--id", "452741"], &[]);
    assert!(
        !ok && out.contains("has no NATS identity"),
        "revoking twice says so: {out}"
    );
}

#[tokio::test]
async fn replacing_a_password_needs_replace_and_the_old_one_stops_at_the_reload() {
    let server = NatsServer::start_shipped();
    let old = create(&server, 7001);
    let out_file = server.store.path().join("again.password");
    let (ok, out) = nats_identity(
        &server.merchants_file(),
        &[
            "create",
            "--id",
            "7001",
            "--password-out",
            out_file.to_str().expect("path"),
        ],
        &[],
    );
    assert!(
        !ok && out.contains("--replace") && !out_file.exists(),
        "an existing identity is not silently replaced: {out}"
    );
    let new = {
        let (ok, out) = nats_identity(
            &server.merchants_file(),
            &["create", "--id", "7001", "--replace"],
            &[],
        );
        assert!(ok && out.contains("replaced"), "{out}");
        out.split("password (shown once): ")
            .nth(1)
            .expect("the new password is printed once")
            .lines()
            .next()
            .expect("line")
            .to_string()
    };
    assert_ne!(old, new);
    server.reload();
    assert!(connect_merchant(&server, 7001, &old).await.is_err());
    connect_merchant(&server, 7001, &new)
        .await
        .expect("the new password works");
}

#[test]
fn ids_and_passwords_that_could_inject_or_weaken_the_config_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("merchants.conf");
    let (ok, out) = nats_identity(&file, &["create", "--id", "10"], &[]);
    assert!(ok, "{out}");
    let before = std::fs::read(&file).expect("file");
    for id in [
        "0",
        "-452739",
        "452739.>",
        "1, password: x}",
        "1\"]}, {user: x}",
        "9223372036854775808",
        "",
    ] {
        let (ok, out) = nats_identity(&file, &["create", "--id", id], &[]);
        assert!(!ok, "--id {id:?} was accepted: {out}");
    }
    let (ok, out) = nats_identity(
        &file,
        &["create", "--id", "11", "--password-from-env", "WEAK"],
        &[("WEAK", "short")],
    );
    assert!(!ok && out.contains("shorter than 20"), "{out}");
    assert_eq!(
        std::fs::read(&file).expect("file"),
        before,
        "nothing refused changed the file"
    );
}

#[test]
fn the_users_file_is_private_holds_hashes_only_and_refuses_exposure_and_hand_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("merchants.conf");
    let pw_file = dir.path().join("m20.password");
    let (ok, out) = nats_identity(
        &file,
        &[
            "create",
            "--id",
            "20",
            "--password-out",
            pw_file.to_str().expect("path"),
        ],
        &[],
    );
    assert!(ok, "{out}");
    let password = std::fs::read_to_string(&pw_file).expect("password");
    assert!(
        !out.contains(password.trim()),
        "printed although written to a file"
    );
    assert_eq!(mode(&file), 0o600, "users file");
    assert_eq!(mode(&pw_file), 0o600, "password file");
    let text = std::fs::read_to_string(&file).expect("file");
    assert!(!text.contains(password.trim()));

    // Readable by others: refused (it holds hashes), the file left as it is.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, out) = nats_identity(&file, &["create", "--id", "21"], &[]);
    assert!(!ok && out.contains("chmod 600"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), text);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A hand-added user with wider rights is never carried over: the command refuses the file.
    let edited = text.replace(
        "\n]\n",
        "\n  {user: intruder, password: x, permissions: {subscribe: {allow: [\">\"]}}}\n]\n",
    );
    std::fs::write(&file, &edited).expect("edit");
    let (ok, out) = nats_identity(&file, &["create", "--id", "22"], &[]);
    assert!(
        !ok && out.contains("line")
            && out.contains("not as `oneclick admin merchant nats-identity` writes it"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("file"), edited);
}

#[tokio::test]
async fn two_admins_creating_identities_at_once_lose_none_of_them() {
    let server = NatsServer::start_shipped();
    let file = server.merchants_file();
    // Six at once: each holds the lock from its read to its rename (its bcrypt hash inside).
    let ids: Vec<i64> = (4001..4007).collect();
    let spawned: Vec<_> = ids
        .iter()
        .map(|id| {
            std::process::Command::new(support::nats::bin())
                .args(["admin", "merchant", "nats-identity", "create", "--id"])
                .arg(id.to_string())
                .arg("--file")
                .arg(&file)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut passwords = Vec::new();
    for child in spawned {
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        passwords.push(
            stdout
                .split("password (shown once): ")
                .nth(1)
                .and_then(|s| s.lines().next())
                .expect("password")
                .to_string(),
        );
    }
    let (_, listed) = nats_identity(&file, &["list"], &[]);
    for id in ids.iter().chain(&[452739]) {
        assert!(
            listed.contains(&format!("merchant_{id}:")),
            "merchant {id} lost:\n{listed}"
        );
    }
    assert_eq!(mode(&file), 0o600);
    server.reload();
    for (id, password) in ids.iter().zip(&passwords) {
        connect_merchant(&server, *id, password)
            .await
            .unwrap_or_else(|e| panic!("merchant_{id}: {e}"));
    }
}
