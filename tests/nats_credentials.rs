//! NATS credentials, one way: the service connects with exactly the identity its settings name
//! — user and password, token, or an NKey seed file — against a real nats-server that requires
//! it, and fails with a wrong one; TLS is verified against the configured CA and refused without
//! it. (`.creds` files need an operator-mode server; their settings are unit-tested in
//! src/config.rs. Credentials inside the URL are refused at load, also unit-tested there.)

use oneclick_testkit as support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oneclick::config::{NatsIdentity, Settings};
use oneclick_actors::engine::requests::SecretString;

/// A nats-server started with `conf` (and extra arguments), killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a free port and waits until that port answers as this server: its
    /// INFO names the server, so a port reused by another test's server (this one then fails to
    /// bind and exits) is never mistaken for it; a server that exited is started again on
    /// another port.
    fn start(conf: &str, extra: &[&str]) -> Server {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let bin =
            std::env::var("ONECLICK_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = support::nats::free_port();
            let name = format!(
                "credentials-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.path().join("nats.conf");
            std::fs::write(
                &path,
                format!("listen: 127.0.0.1:{port}\nserver_name: {name}\n{conf}\n"),
            )
            .expect("conf");
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&path)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
            let until = Instant::now() + Duration::from_secs(10);
            while child.try_wait().expect("nats-server status").is_none() {
                if answers_as(port, &name) {
                    return Server { child, port, dir };
                }
                assert!(Instant::now() < until, "nats-server did not open {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nats-server exited at start five times (each on another free port)");
    }

    fn settings(&self, scheme: &str) -> Settings {
        let mut s = Settings::default();
        s.nats.url = format!("{scheme}://127.0.0.1:{}", self.port);
        s
    }
}

/// Whether the server listening on `port` introduces itself (its INFO line) as `name`.
fn answers_as(port: u16, name: &str) -> bool {
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut info = String::new();
    BufReader::new(stream).read_line(&mut info).is_ok()
        && info.contains(&format!("\"server_name\":\"{name}\""))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let seed_file = server.dir.path().join("seed");
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
