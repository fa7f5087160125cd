//! NATS credentials, one way: the service connects with exactly the identity its settings name
//! — user and password, token, or an NKey seed file — against a real nats-server that requires
//! it, and fails with a wrong one; TLS is verified against the configured CA and refused without
//! it. (`.creds` files need an operator-mode server; their settings are unit-tested in
//! src/config.rs. Credentials inside the URL are refused at load, also unit-tested there.)

use oneclick_testkit as support;
use support::nats::NatsServer;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oneclick::config::{NatsIdentity, Settings};
use oneclick_actors::engine::requests::SecretString;

/// A nats-server started with `conf` (and extra arguments) on a free port, killed on drop: the
/// test kit's server, so it is ready when its own log says so and is started again on another
/// port when its port was taken meanwhile.
struct Server(NatsServer);

impl Server {
    fn start(conf: &str, extra: &[&str]) -> Server {
        Server(NatsServer::start_with(|port, store| {
            let path = store.join("nats.conf");
            std::fs::write(&path, format!("listen: 127.0.0.1:{port}\n{conf}\n")).expect("conf");
            let mut args = vec!["-c".to_string(), path.display().to_string()];
            args.extend(extra.iter().map(|a| a.to_string()));
            args
        }))
    }

    fn settings(&self, scheme: &str) -> Settings {
        let mut s = Settings::default();
        s.nats.url = format!("{scheme}://127.0.0.1:{}", self.0.port);
        s
    }
}

async fn connects(settings: &Settings) -> Result<(), String> {
    settings.validate().map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        Duration::from_secs(10),
        oneclick::app::connect_nats(settings),
    )
    .await
    {
        Ok(Ok(client)) => {
            client.flush().await.map_err(|e| e.to_string())?;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test]
async fn the_service_connects_with_user_and_password_and_is_refused_with_a_wrong_one() {
    let server = Server::start(
        r#"authorization { users: [ { user: svc, password: "right-password" } ] }"#,
        &[],
    );
    let mut s = server.settings("nats");
    assert!(connects(&s).await.is_err(), "anonymous must be refused");
    s.nats.user = Some("svc".into());
    s.nats.password = Some(SecretString::new("wrong-password"));
    let err = connects(&s).await.expect_err("a wrong password is refused");
    assert!(!err.contains("wrong-password"), "password echoed: {err}");
    s.nats.password = Some(SecretString::new("right-password"));
    connects(&s).await.expect("user and password");
    assert_eq!(s.nats.identity(), NatsIdentity::UserPassword("svc".into()));
}

#[tokio::test]
async fn the_service_connects_with_a_token() {
    let server = Server::start(r#"authorization { token: "s3cr3t-token" }"#, &[]);
    let mut s = server.settings("nats");
    assert!(connects(&s).await.is_err(), "anonymous must be refused");
    s.nats.token = Some(SecretString::new("s3cr3t-token"));
    connects(&s).await.expect("token");
}

#[tokio::test]
async fn the_service_connects_with_an_nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let server = Server::start(
        &format!(
            "authorization {{ users: [ {{ nkey: {} }} ] }}",
            user.public_key()
        ),
        &[],
    );
    let mut s = server.settings("nats");
    let seed_file = server.0.store.path().join("seed");
    std::fs::write(&seed_file, other.seed().expect("seed")).expect("write");
    s.nats.nkey_seed_file = Some(seed_file.clone());
    assert!(connects(&s).await.is_err(), "another NKey must be refused");
    std::fs::write(&seed_file, format!("{}\n", user.seed().expect("seed"))).expect("write");
    connects(&s).await.expect("the NKey seed file");
}

fn make_certs(dir: &Path, extra_sans: &str) {
    let status = Command::new(support::nats::repo_root().join("scripts/make-certs"))
        .arg(dir)
        .env("NATS_EXTRA_SANS", extra_sans)
        .stderr(Stdio::null())
        .status()
        .expect("scripts/make-certs");
    assert!(status.success(), "scripts/make-certs failed");
}

#[tokio::test]
async fn tls_is_verified_against_the_configured_ca_and_refused_without_it() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(&certs.path().join("ours"), "IP:127.0.0.1");
    make_certs(&certs.path().join("other"), "IP:127.0.0.1");
    let ours = certs.path().join("ours");
    let server = Server::start(
        "",
        &[
            "--tls",
            "--tlscert",
            &ours.join("nats.crt").display().to_string(),
            "--tlskey",
            &ours.join("nats.key").display().to_string(),
        ],
    );
    let mut s = server.settings("tls");
    let err = connects(&s).await.expect_err("system roots only");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    s.nats.tls_ca_file = Some(certs.path().join("other/ca.crt"));
    let err = connects(&s).await.expect_err("another CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Control: the same connection trusting our CA works, also from a nats:// URL.
    s.nats.tls_ca_file = Some(ours.join("ca.crt"));
    connects(&s).await.expect("TLS with our CA");
    let mut s = server.settings("nats");
    s.nats.tls_ca_file = Some(ours.join("ca.crt"));
    connects(&s)
        .await
        .expect("nats:// upgraded to verified TLS");
}
