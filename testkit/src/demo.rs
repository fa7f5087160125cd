//! The demonstration payment page in tests (issue 15 §3): `oneclick demo-page` as a child
//! process beside a [`crate::nats::Stack`], given only what a gateway has — the NATS URL and
//! subject prefix, its HTTPS certificate, and the demo merchant's signature key in an owner-only
//! file — and **no** database URL or key file (it must need neither).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats::{bin, free_port, Stack, DEMO_KEY_B64};
use crate::web::{HttpsClient, WebCerts};

/// A running `oneclick demo-page`.
pub struct DemoPage {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub https: HttpsClient,
    _dir: tempfile::TempDir,
}

impl DemoPage {
    /// Starts the page for `stack`'s service with `certs`; `env` adds or overrides settings.
    pub async fn start(stack: &Stack, certs: &WebCerts, env: &[(&str, &str)]) -> DemoPage {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("demo-signature-key.txt");
        std::fs::write(&key_file, DEMO_KEY_B64).expect("key file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600");
        }
        let port = free_port();
        let log = dir.path().join("demo-page.log");
        let mut vars: Vec<(String, String)> = vec![
            ("ONECLICK__NATS__URL".into(), stack.nats.url()),
            ("ONECLICK__NATS__PREFIX".into(), stack.app.prefix.clone()),
            ("ONECLICK__DEMO__LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "ONECLICK__DEMO__TLS_CERT_FILE".into(),
                certs.cert.display().to_string(),
            ),
            (
                "ONECLICK__DEMO__TLS_KEY_FILE".into(),
                certs.key.display().to_string(),
            ),
            (
                "ONECLICK__DEMO__SIGNATURE_KEY_FILE".into(),
                key_file.display().to_string(),
            ),
            // Debug on purpose: the card-data scans read this log.
            ("ONECLICK__LOG__LEVEL".into(), "debug".into()),
            // A database it must never open: a path that cannot exist.
            (
                "ONECLICK__DATABASE__URL".into(),
                "sqlite:///nonexistent/demo-must-not-open.db".into(),
            ),
        ];
        for (k, v) in env {
            vars.retain(|(key, _)| key != k);
            vars.push((k.to_string(), v.to_string()));
        }
        let child = Command::new(bin())
            .arg("demo-page")
            .env_remove("ONECLICK__KEYS__FILE")
            .env_remove("ONECLICK__KEYS__KEK_FILE")
            .envs(vars)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn oneclick demo-page");
        let mut page = DemoPage {
            child,
            port,
            log,
            https: HttpsClient::new(&certs.ca, port),
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = page.child.try_wait() {
                panic!("demo-page exited ({status}); log:\n{}", page.log_text());
            }
            assert!(
                Instant::now() < until,
                "demo-page did not listen; log:\n{}",
                page.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        page
    }

    /// `https://localhost:<port>`
    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (and with what).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for DemoPage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
