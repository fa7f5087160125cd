//! A private PostgreSQL cluster per test: `initdb` in a tempdir from the newest
//! `/usr/lib/postgresql/*/bin` (or `ONECLICK_TEST_PG_BINDIR`), trust auth for user `postgres`,
//! on a free loopback port, its log (stderr, no logging collector) in a file the test can scan.
//! Used where a test must read *everything* the server logged (the log scan of security issue 12
//! starts it with `log_statement=all`, `log_min_messages=debug1`), which the machine's shared
//! server cannot give.
//!
//! As root it runs as the OS user `postgres` (initdb refuses root), as scripts/ensure-postgres
//! does: the tempdir is handed to that user. Stopped (`pg_ctl stop -m immediate`) on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::nats::free_port;

/// A running private cluster.
pub struct PrivatePostgres {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    /// The server's whole log (stderr of the postmaster).
    pub log: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

/// The settings of a cluster that logs everything: every statement with its parameters, and
/// server messages down to debug1.
pub const LOG_EVERYTHING: &[(&str, &str)] = &[
    ("log_statement", "all"),
    ("log_min_messages", "debug1"),
    ("log_min_error_statement", "debug1"),
    ("log_connections", "on"),
    ("log_disconnections", "on"),
    ("logging_collector", "off"),
    ("log_parameter_max_length", "-1"),
    ("log_parameter_max_length_on_error", "-1"),
];

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest server bin dir (Debian keeps it off PATH).
pub fn bindir() -> PathBuf {
    if let Ok(d) = std::env::var("ONECLICK_TEST_PG_BINDIR") {
        return PathBuf::from(d);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).expect(
        "no /usr/lib/postgresql/*/bin/initdb: install Debian's `postgresql` (scripts/test does)",
    )
}

/// Runs `program args…` as the cluster's owner (`postgres` when we are root).
fn as_owner(program: &Path, args: &[String]) -> Output {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

impl PrivatePostgres {
    /// A cluster with [`LOG_EVERYTHING`].
    pub fn start_logging_everything() -> PrivatePostgres {
        Self::start(LOG_EVERYTHING)
    }

    /// initdb + start with extra `-c name=value` settings; waits until it accepts connections.
    pub fn start(settings: &[(&str, &str)]) -> PrivatePostgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("oneclick-pg")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster dir to postgres");
        }
        let out = as_owner(
            &bin.join("initdb"),
            &[
                "-D".into(),
                data.display().to_string(),
                "-U".into(),
                "postgres".into(),
                "--auth=trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-locale".into(),
                "--no-sync".into(),
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            dir.path().display()
        );
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let out = as_owner(
            &bin.join("pg_ctl"),
            &[
                "-D".into(),
                data.display().to_string(),
                "-l".into(),
                log.display().to_string(),
                "-o".into(),
                options,
                "-w".into(),
                "-t".into(),
                "60".into(),
                "start".into(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        PrivatePostgres {
            dir,
            data,
            log,
            port,
            bin,
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth: no password to leak).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_owner(
            &self.bin.join("pg_ctl"),
            &[
                "-D".into(),
                self.data.display().to_string(),
                "-m".into(),
                "immediate".into(),
                "-w".into(),
                "stop".into(),
            ],
        );
    }
}
