//! `oneclick admin merchant nats-identity create|revoke|list`: a merchant's NATS user, written
//! into the GENERATED users file that the shipped `deploy/nats/nats.conf` includes
//! (`merchants.conf`), so onboarding a merchant never means editing the shipped file by hand.
//!
//! Layout (nats-server 2.11 semantics, checked): `nats.conf` → `include "merchants.conf"` inside
//! `authorization {}`; `merchants.conf` (this module's output) → `include "service-users.conf"`
//! (shipped: the service's and the gateway's users, defined once) and the one `users` list,
//! naming `$ONECLICK_SERVICE_USER`, `$GATEWAY_USER`, then one line per merchant. NATS cannot
//! append to a list across files and an included file does not see its includer's variables,
//! which is why the list lives here and the shared definitions are included by it.
//!
//! Invariants:
//! - a merchant line is rendered from `(id, bcrypt hash)` and the configured subject prefixes
//!   only, with exactly the example merchant's permissions: publish `<prefix>.v1.merchant.<id>.>`,
//!   subscribe `<merchant_inbox_prefix><id>.>`. Ids are positive integers, prefixes are checked
//!   to be plain subject tokens, so nothing from the command line can inject config syntax;
//! - the file holds bcrypt hashes (cost [`BCRYPT_COST`]), never a password; the password is
//!   printed once or written to a new 0600 file;
//! - the file is read only if it is exactly what this module writes (a hand-edited or foreign
//!   line is refused, never carried over) and only if group and others have no access to it;
//! - a change is read-modify-write under an exclusive lock on `<file>.lock` (two admins at once
//!   serialize; the bcrypt hash is computed inside the lock) and lands by an atomic rename of a
//!   0600 temporary file, so nats-server never reads a half-written file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use crate::config::Settings;

/// bcrypt cost of merchants' password hashes: what `nats server passwd` uses. nats-server pays it
/// on every connection of the user (about 0.1 s of CPU), never per message.
pub const BCRYPT_COST: u32 = 11;
/// The shipped file with the service's and gateway's users, included from beside the generated one.
pub const SERVICE_USERS_FILE: &str = "service-users.conf";
/// Default path of the generated file (the compose file mounts it from here, or from
/// `$ONECLICK_NATS_MERCHANTS_FILE`).
pub const DEFAULT_FILE: &str = "deploy/nats/merchants.conf";

const INCLUDE_LINE: &str = "include \"service-users.conf\"";
const USERS_OPEN: &str = "users: [";
const SERVICE_LINE: &str = "  $ONECLICK_SERVICE_USER";
const GATEWAY_LINE: &str = "  $GATEWAY_USER";
const USERS_CLOSE: &str = "]";
const MERCHANT_LINE_START: &str = "  {user: merchant_";

#[derive(Debug, Args)]
pub struct NatsIdentityArgs {
    #[command(subcommand)]
    pub command: NatsIdentityCommand,
}

/// The generated users file every subcommand works on.
#[derive(Debug, Args)]
pub struct FileArg {
    /// The generated NATS users file (mode 0600), beside the shipped nats.conf and
    /// service-users.conf.
    #[arg(long, env = "ONECLICK_NATS_MERCHANTS_FILE", default_value = DEFAULT_FILE)]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NatsIdentityCommand {
    /// Create merchant N's NATS user `merchant_N` (bcrypt-hashed password, its own subjects and
    /// inbox only); creates the file when absent. The password is printed once, or written to
    /// --password-out.
    Create {
        #[arg(long)]
        id: i64,
        #[command(flatten)]
        file: FileArg,
        /// Write the password to this new file (mode 0600; never overwrites) instead of printing it.
        #[arg(long)]
        password_out: Option<PathBuf>,
        /// Take the password from this environment variable instead of generating one (e.g. to
        /// keep the password a merchant already has; at least 20 characters).
        #[arg(long, conflicts_with = "password_out")]
        password_from_env: Option<String>,
        /// Replace an existing identity (a new password; the old one stops working at the reload).
        #[arg(long)]
        replace: bool,
    },
    /// Remove merchant N's NATS user; at the reload nats-server also closes its open connections.
    Revoke {
        #[arg(long)]
        id: i64,
        #[command(flatten)]
        file: FileArg,
    },
    /// List the merchants that have a NATS user, with their subjects.
    List {
        #[command(flatten)]
        file: FileArg,
    },
}

/// Why a NATS identity could not be written; none carries a password or hash.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("--id {0}: a merchant id is a positive integer")]
    BadId(i64),
    #[error("nats.{0} = {1:?} cannot be written into a NATS permission (letters, digits, `_`, `-` and `.` only)")]
    BadPrefix(&'static str, String),
    #[error("{file}: line {line} is not as `oneclick admin merchant nats-identity` writes it; refusing to carry it over (restore the file from a backup, or remove the line and create that identity again)")]
    Foreign { file: String, line: usize },
    #[error("{file}: not a complete generated users file ({what})")]
    Incomplete { file: String, what: &'static str },
    #[error("{file}: group or others may access it (mode {mode:o}); it holds password hashes: `chmod 600 {file}`")]
    Exposed { file: String, mode: u32 },
    #[error("merchant {0} already has a NATS identity; `--replace` gives it a new password")]
    Exists(i64),
    #[error("merchant {0} has no NATS identity in {1}")]
    Unknown(i64, String),
    #[error("--password-from-env {0}: the variable is unset, shorter than 20 characters or holds control characters")]
    WeakPassword(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("bcrypt: {0}")]
    Hash(String),
}

/// The subjects a merchant's user may use, from the service's settings (so they match what the
/// service serves and where its reply guard answers).
#[derive(Debug, Clone)]
pub struct IdentitySubjects {
    prefix: String,
    inbox_prefix: String,
}

impl IdentitySubjects {
    pub fn from_settings(settings: &Settings) -> Result<IdentitySubjects, IdentityError> {
        Self::new(&settings.nats.prefix, &settings.nats.merchant_inbox_prefix)
    }

    pub fn new(prefix: &str, inbox_prefix: &str) -> Result<IdentitySubjects, IdentityError> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !s.starts_with('.')
                && !s.contains("..")
        };
        if !plain(prefix) || prefix.contains('.') {
            return Err(IdentityError::BadPrefix("prefix", prefix.to_string()));
        }
        if !plain(inbox_prefix) {
            return Err(IdentityError::BadPrefix(
                "merchant_inbox_prefix",
                inbox_prefix.to_string(),
            ));
        }
        Ok(IdentitySubjects {
            prefix: prefix.to_string(),
            inbox_prefix: inbox_prefix.to_string(),
        })
    }

    pub fn publish(&self, id: i64) -> String {
        format!("{}.v1.merchant.{id}.>", self.prefix)
    }

    pub fn subscribe(&self, id: i64) -> String {
        format!("{}{id}.>", self.inbox_prefix)
    }

    /// The one line of merchant `id` (its hash is a bcrypt string, checked by the caller).
    fn line(&self, id: i64, hash: &str) -> String {
        format!(
            "{MERCHANT_LINE_START}{id}, password: \"{hash}\", permissions: {{publish: {{allow: [\"{}\"]}}, subscribe: {{allow: [\"{}\"]}}}}}}",
            self.publish(id),
            self.subscribe(id)
        )
    }
}

fn check_id(id: i64) -> Result<i64, IdentityError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(IdentityError::BadId(id))
    }
}

/// `$2a$NN$` + 53 characters of bcrypt's base64 alphabet: nothing that could close the quoted string.
fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && hash.starts_with("$2a$")
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// The merchants of a generated users file: id → bcrypt hash of the password.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MerchantsFile {
    pub merchants: BTreeMap<i64, String>,
}

impl MerchantsFile {
    /// Reads a file this module wrote; any other line is an error naming it.
    pub fn parse(
        text: &str,
        subjects: &IdentitySubjects,
        file: &str,
    ) -> Result<MerchantsFile, IdentityError> {
        let foreign = |line: usize| IdentityError::Foreign {
            file: file.to_string(),
            line,
        };
        let mut expected = [INCLUDE_LINE, USERS_OPEN, SERVICE_LINE, GATEWAY_LINE].into_iter();
        let mut next_fixed = expected.next();
        let mut closed = false;
        let mut merchants = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if closed {
                return Err(foreign(n));
            }
            if let Some(fixed) = next_fixed {
                if line != fixed {
                    return Err(foreign(n));
                }
                next_fixed = expected.next();
                continue;
            }
            if line == USERS_CLOSE {
                closed = true;
                continue;
            }
            let (id, hash) = merchant_of_line(line).ok_or_else(|| foreign(n))?;
            if subjects.line(id, hash) != line || merchants.insert(id, hash.to_string()).is_some() {
                return Err(foreign(n));
            }
        }
        if next_fixed.is_some() || !closed {
            return Err(IdentityError::Incomplete {
                file: file.to_string(),
                what: if closed {
                    "the service or gateway user is missing"
                } else {
                    "the users list is not closed"
                },
            });
        }
        Ok(MerchantsFile { merchants })
    }

    pub fn render(&self, subjects: &IdentitySubjects) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "# GENERATED by `oneclick admin merchant nats-identity` ({}). Do not edit by hand: the\n\
             # command refuses a file it did not write. Included by deploy/nats/nats.conf.\n\
             # The NATS users: the service and the gateway (defined in {SERVICE_USERS_FILE}, shipped\n\
             # beside this file), then one line per merchant with a bcrypt hash of its password\n\
             # (never the password) and exactly its own subjects and inbox.\n\
             # After a change: `nats-server --signal reload` (or SIGHUP; compose: `docker compose kill -s HUP nats`).\n",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ));
        for line in [INCLUDE_LINE, USERS_OPEN, SERVICE_LINE, GATEWAY_LINE] {
            out.push_str(line);
            out.push('\n');
        }
        for (id, hash) in &self.merchants {
            out.push_str(&subjects.line(*id, hash));
            out.push('\n');
        }
        out.push_str(USERS_CLOSE);
        out.push('\n');
        out
    }
}

/// `(id, hash)` of a merchant line, if it has the shape of one (the caller re-renders it to
/// compare every other character).
fn merchant_of_line(line: &str) -> Option<(i64, &str)> {
    let rest = line.strip_prefix(MERCHANT_LINE_START)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    if digits == 0 || rest.starts_with('0') {
        return None;
    }
    let id: i64 = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(", password: \"")?;
    let hash = rest.get(..60)?;
    if !is_bcrypt(hash) || check_id(id).is_err() {
        return None;
    }
    Some((id, hash))
}

/// A fresh password: 32 random bytes as base64 without `+/=`, after an `m` (43 or so letters
/// and digits, about 250 bits).
fn generate_password() -> Zeroizing<String> {
    let key = oneclick_actors::crypto::MasterKey::generate().to_base64();
    let mut password = Zeroizing::new(String::from("m"));
    password.extend(key.chars().filter(|c| c.is_ascii_alphanumeric()));
    password
}

fn hash_password(password: &str) -> Result<String, IdentityError> {
    let parts = bcrypt::hash_with_result(password, BCRYPT_COST)
        .map_err(|e| IdentityError::Hash(e.to_string()))?;
    Ok(parts.format_for_version(bcrypt::Version::TwoA))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |e| IdentityError::Io(path.display().to_string(), e)
}

/// The generated file, locked for a read-modify-write.
struct Locked {
    path: PathBuf,
    _lock: File,
}

impl Locked {
    fn open(path: &Path) -> Result<Locked, IdentityError> {
        let lock_path = sibling(path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        Ok(Locked {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The file's merchants; an absent file has none.
    fn read(&self, subjects: &IdentitySubjects) -> Result<MerchantsFile, IdentityError> {
        read_file(&self.path, subjects)
    }

    /// Writes `content` to a 0600 temporary file beside it, syncs it, renames it over the file.
    fn replace(&self, content: &str) -> Result<(), IdentityError> {
        let tmp = sibling(&self.path, ".tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(content.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn read_file(path: &Path, subjects: &IdentitySubjects) -> Result<MerchantsFile, IdentityError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MerchantsFile::default()),
        Err(e) => return Err(io(path)(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Exposed {
            file: path.display().to_string(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    MerchantsFile::parse(&text, subjects, &path.display().to_string())
}

fn reload_hint(file: &Path) {
    println!(
        "NATS picks it up on a configuration reload (open connections of a removed or replaced user are closed):\n  \
         nats-server --signal reload[=PID]     # or: kill -HUP <nats-server pid>\n  \
         docker compose kill -s HUP nats       # compose\n\
         {} must sit beside nats.conf and {SERVICE_USERS_FILE} (compose mounts it as /etc/nats/merchants.conf).",
        file.display()
    );
}

pub fn run(settings: &Settings, command: NatsIdentityCommand) -> anyhow::Result<()> {
    let subjects = IdentitySubjects::from_settings(settings)?;
    match command {
        NatsIdentityCommand::Create {
            id,
            file: FileArg { file },
            password_out,
            password_from_env,
            replace,
        } => {
            let id = check_id(id)?;
            let password = match &password_from_env {
                Some(var) => {
                    let p = Zeroizing::new(std::env::var(var).unwrap_or_default());
                    if p.chars().count() < 20 || p.chars().any(char::is_control) {
                        return Err(IdentityError::WeakPassword(var.clone()).into());
                    }
                    p
                }
                None => generate_password(),
            };
            if let Some(out) = &password_out {
                if out.exists() {
                    anyhow::bail!(
                        "--password-out {}: exists; not overwriting it",
                        out.display()
                    );
                }
            }
            let locked = Locked::open(&file)?;
            let mut merchants = locked.read(&subjects)?;
            let existed = merchants.merchants.contains_key(&id);
            if existed && !replace {
                return Err(IdentityError::Exists(id).into());
            }
            // Hashed inside the lock: a second admin waits for this whole change.
            merchants.merchants.insert(id, hash_password(&password)?);
            if let Some(out) = &password_out {
                let text = Zeroizing::new(format!("{}\n", password.as_str()));
                crate::keys::write_new_file(out, &text)?;
            }
            locked.replace(&merchants.render(&subjects))?;
            println!(
                "merchant {id}: NATS user merchant_{id} {} in {} (bcrypt hash only)",
                if existed { "replaced" } else { "created" },
                file.display()
            );
            println!(
                "  may publish {}   may subscribe {}   (connect with inbox prefix \"{}{id}\")",
                subjects.publish(id),
                subjects.subscribe(id),
                subjects.inbox_prefix
            );
            match (&password_out, &password_from_env) {
                (Some(out), _) => println!("  password written to {} (mode 0600)", out.display()),
                (None, Some(var)) => println!("  password: the one in ${var}"),
                (None, None) => println!("  password (shown once): {}", password.as_str()),
            }
            if !file.with_file_name(SERVICE_USERS_FILE).exists() {
                println!(
                    "  note: no {SERVICE_USERS_FILE} beside {}; nats-server needs it there",
                    file.display()
                );
            }
            reload_hint(&file);
        }
        NatsIdentityCommand::Revoke {
            id,
            file: FileArg { file },
        } => {
            let id = check_id(id)?;
            let locked = Locked::open(&file)?;
            let mut merchants = locked.read(&subjects)?;
            if merchants.merchants.remove(&id).is_none() {
                return Err(IdentityError::Unknown(id, file.display().to_string()).into());
            }
            locked.replace(&merchants.render(&subjects))?;
            println!(
                "merchant {id}: NATS user merchant_{id} removed from {}",
                file.display()
            );
            reload_hint(&file);
        }
        NatsIdentityCommand::List {
            file: FileArg { file },
        } => {
            let merchants = read_file(&file, &subjects)?;
            for id in merchants.merchants.keys() {
                println!(
                    "merchant_{id}: publish {}  subscribe {}",
                    subjects.publish(*id),
                    subjects.subscribe(*id)
                );
            }
            if merchants.merchants.is_empty() {
                println!("no merchant has a NATS identity in {}", file.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> IdentitySubjects {
        IdentitySubjects::new("oneclick", "_INBOX.merchant_").expect("default prefixes")
    }

    const HASH: &str = "$2a$11$3kIDaCxw.Glsl1.u5nKa6eUnNDLV5HV9tIuUp7EHhMt6Nm9myW1aS";

    #[test]
    fn a_rendered_file_parses_back_to_the_same_merchants() {
        let mut file = MerchantsFile::default();
        file.merchants.insert(452739, HASH.to_string());
        file.merchants.insert(7, HASH.replace("3k", "4k"));
        let text = file.render(&subjects());
        assert!(text.contains(
            "  {user: merchant_452739, password: \"$2a$11$3kIDaCxw.Glsl1.u5nKa6eUnNDLV5HV9tIuUp7EHhMt6Nm9myW1aS\", permissions: {publish: {allow: [\"oneclick.v1.merchant.452739.>\"]}, subscribe: {allow: [\"_INBOX.merchant_452739.>\"]}}}"
        ), "{text}");
        assert_eq!(
            MerchantsFile::parse(&text, &subjects(), "f").expect("parses"),
            file
        );
    }

    #[test]
    fn hand_edited_lines_are_refused_by_line_number() {
        let mut file = MerchantsFile::default();
        file.merchants.insert(5, HASH.to_string());
        let text = file.render(&subjects());
        let line_of =
            |needle: &str| text.lines().position(|l| l.contains(needle)).expect("line") + 1;
        let merchant_line = line_of("merchant_5,");
        for tampered in [
            // wider permissions
            text.replace("oneclick.v1.merchant.5.>", "oneclick.v1.merchant.>"),
            // another merchant's inbox
            text.replace("_INBOX.merchant_5.>", "_INBOX.merchant_6.>"),
            // a plaintext password
            text.replace(HASH, "plaintext-password"),
            // a leading zero (the same merchant twice under two spellings)
            text.replace("merchant_5,", "merchant_05,"),
        ] {
            match MerchantsFile::parse(&tampered, &subjects(), "f") {
                Err(IdentityError::Foreign { line, .. }) => assert_eq!(line, merchant_line),
                other => panic!("accepted a tampered file: {other:?}"),
            }
        }
        let extra = text.replace(USERS_CLOSE, "  {user: intruder, password: x}\n]");
        assert!(matches!(
            MerchantsFile::parse(&extra, &subjects(), "f"),
            Err(IdentityError::Foreign { .. })
        ));
        let no_gateway = text.replace("  $GATEWAY_USER\n", "");
        assert!(MerchantsFile::parse(&no_gateway, &subjects(), "f").is_err());
        let unclosed = text.replace("\n]\n", "\n");
        assert!(matches!(
            MerchantsFile::parse(&unclosed, &subjects(), "f"),
            Err(IdentityError::Incomplete { .. })
        ));
    }

    #[test]
    fn ids_and_prefixes_that_could_inject_config_are_refused() {
        assert!(check_id(0).is_err());
        assert!(check_id(-452739).is_err());
        for bad in ["one\"click", "one click", "a.b", "one}click", "*", ">", ""] {
            assert!(
                IdentitySubjects::new(bad, "_INBOX.merchant_").is_err(),
                "{bad}"
            );
        }
        for bad in ["_INBOX.>", "_INBOX.\"", "_INBOX..m", ".x"] {
            assert!(IdentitySubjects::new("oneclick", bad).is_err(), "{bad}");
        }
        assert!(!is_bcrypt(
            "$2a$11$\"}, {user: x, password: y}]  #aaaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    #[test]
    fn generated_passwords_are_long_and_plain() {
        let p = generate_password();
        assert!(p.len() >= 40, "{}", p.len());
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(*p, *generate_password());
    }
}
