//! The HTTPS web services in tests (issue 15): certificates made by the shipped
//! `scripts/make-certs` (so the documented step is what the tests run), an instance with its
//! web listener on, and a small HTTP/1.1 client over rustls that trusts only that CA — plain
//! enough that a test can also hold a raw TLS stream and send slowly (the slow-client attacks).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::nats::{free_port, repo_root, OneClick};

/// The files `scripts/make-certs DIR` writes that the web services use.
#[derive(Debug, Clone)]
pub struct WebCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Runs `scripts/make-certs DIR` (DIR must not hold a CA yet).
pub fn make_certs(dir: &Path) -> WebCerts {
    let status = Command::new(repo_root().join("scripts/make-certs"))
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("scripts/make-certs");
    assert!(status.success(), "scripts/make-certs failed");
    WebCerts {
        ca: dir.join("ca.crt"),
        cert: dir.join("web.crt"),
        key: dir.join("web.key"),
    }
}

/// Turns on `app`'s web services on a free loopback port with `certs`; returns the port.
pub fn enable_web(app: &mut OneClick, certs: &WebCerts) -> u16 {
    let port = free_port();
    app.set_env("ONECLICK__WEB__LISTEN", &format!("127.0.0.1:{port}"));
    app.set_env(
        "ONECLICK__WEB__TLS_CERT_FILE",
        &certs.cert.display().to_string(),
    );
    app.set_env(
        "ONECLICK__WEB__TLS_KEY_FILE",
        &certs.key.display().to_string(),
    );
    port
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Every value of a header.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "HTTP {} body is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A client of one HTTPS port that trusts only the given CA (server name `localhost`).
#[derive(Clone)]
pub struct HttpsClient {
    connector: TlsConnector,
    pub port: u16,
}

impl HttpsClient {
    pub fn new(ca: &Path, port: u16) -> HttpsClient {
        let pem = std::fs::read(ca).expect("CA file");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        HttpsClient {
            connector: TlsConnector::from(Arc::new(config)),
            port,
        }
    }

    /// A TLS connection to the service (handshake done).
    pub async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("TCP connect to the web port");
        let name = ServerName::try_from("localhost").expect("server name");
        self.connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the web services")
    }

    /// `METHOD path` with `body` (and extra header lines), `Connection: close`; the answer.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        let mut stream = self.connect().await;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body).await.expect("send body");
        stream.flush().await.expect("flush");
        read_reply(&mut stream, Duration::from_secs(15))
            .await
            .expect("an HTTP answer")
    }

    /// `POST path` with a JSON body (and extra header lines).
    pub async fn post_with(
        &self,
        path: &str,
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(extra_headers);
        self.send("POST", path, &headers, body).await
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> HttpReply {
        self.post_with(path, &[], body).await
    }

    /// `POST path` with a JSON body; the JSON answer (any status).
    pub async fn post_json(&self, path: &str, body: &Value) -> Value {
        let bytes = serde_json::to_vec(body).expect("json");
        self.post(path, &bytes).await.json()
    }
}

/// Reads one HTTP/1.1 answer from a connection the server closes after it (`Connection:
/// close`), within `within`; `None` when the connection ended without an HTTP status line.
pub async fn read_reply<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> Option<HttpReply> {
    let mut raw = Vec::new();
    // A peer that closes without TLS close_notify ends in an error: what was read still counts.
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut raw)).await;
    parse_reply(&raw)
}

/// Parses status line, headers and a `Content-Length` body.
pub fn parse_reply(raw: &[u8]) -> Option<HttpReply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Some(HttpReply {
        status,
        headers,
        body,
    })
}

/// A [`crate::nats::Stack`] with its web services on, and a client of them.
pub struct WebStack {
    pub stack: crate::nats::Stack,
    pub https: HttpsClient,
    pub certs: WebCerts,
    _certs_dir: tempfile::TempDir,
}

impl WebStack {
    /// Creates (or resets) a personal-account user with `oneclick admin account-user`.
    pub fn account_user(&self, merchant_id: i64, login: &str, password: &str) {
        let merchant = merchant_id.to_string();
        self.stack.app.admin(&[
            "account-user",
            "--merchant",
            &merchant,
            "--login",
            login,
            "--password",
            password,
        ]);
    }

    /// NATS + oneclick (SQLite unless `database_url`) with HTTPS on; `configure` may change more.
    pub async fn start(
        database_url: Option<String>,
        configure: impl FnOnce(&mut OneClick),
    ) -> WebStack {
        let certs_dir = tempfile::tempdir().expect("tempdir");
        let certs = make_certs(&certs_dir.path().join("certs"));
        let mut port = 0;
        let stack = crate::nats::Stack::start_with(database_url, |app| {
            port = enable_web(app, &certs);
            configure(app);
        })
        .await;
        let https = HttpsClient::new(&certs.ca, port);
        WebStack {
            stack,
            https,
            certs,
            _certs_dir: certs_dir,
        }
    }
}

/// A client of the personal account that keeps its cookies, as a browser would (tests read the
/// HTML it gets; the browser tests drive a real one).
pub struct AccountClient {
    pub https: HttpsClient,
    /// name → value, from `Set-Cookie` (a `Max-Age=0` removes).
    pub cookies: std::collections::BTreeMap<String, String>,
}

/// `value` of `name="<name>" value="…"` in a page (hidden fields).
pub fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl AccountClient {
    pub fn new(https: HttpsClient) -> AccountClient {
        AccountClient {
            https,
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, reply: &HttpReply) {
        for set in reply.headers_named("set-cookie") {
            let first = set.split(';').next().unwrap_or_default();
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || set.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> HttpReply {
        let cookies = self.cookie_header();
        let reply = self
            .https
            .send("GET", path, &[("Cookie", &cookies)], b"")
            .await;
        self.keep_cookies(&reply);
        reply
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpReply {
        let cookies = self.cookie_header();
        let body = form(fields);
        let reply = self
            .https
            .send(
                "POST",
                path,
                &[
                    ("Cookie", &cookies),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .await;
        self.keep_cookies(&reply);
        reply
    }

    /// Opens the sign-in page and submits it; the answer (303 to the One Click tab on success).
    pub async fn sign_in(&mut self, merchant_id: i64, login: &str, password: &str) -> HttpReply {
        let page = self.get("/account/login").await;
        let csrf = field(&page.text(), "csrf").expect("the sign-in form's token");
        self.post_form(
            "/account/login",
            &[
                ("merchant_id", &merchant_id.to_string()),
                ("login", login),
                ("password", password),
                ("csrf", &csrf),
                ("lang", "en"),
            ],
        )
        .await
    }
}
