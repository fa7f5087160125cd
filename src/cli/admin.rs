//! `oneclick admin …`: migrations, merchants and their web-service users, unions, demo data, the
//! audit trail, and master keys (generate — wrapped by a key-encryption key —, wrap a plaintext
//! key file, status, online rotation and re-seal). Runs against the vault database directly.
//!
//! Never surprises (issue 16 item 5): `admin merchant` creates or updates only the fields named;
//! the R2 signature key changes only by `admin merchant rotate-signing-key`; `admin merchant show`
//! prints settings without secrets (`"set"`); every command that changes state prints what changed
//! (`field: old → new`) and appends an audit row (actor `admin-cli:<OS user>`, PCI DSS 10.2),
//! in the same transaction when the change is a vault transaction.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::{Args, Subcommand};
use oneclick_actors::crypto::{Keyring, LocalKek};
use oneclick_actors::engine::merchants::hash_password;
use oneclick_actors::vault::audit::{
    append_audit, format_ms, list_audit, AppendAudit, AuditAction, AuditActor, ListAudit, Record,
};
use oneclick_actors::vault::keys::{key_status, rotate_batch, GetKeyStatus, RotateBatch};
use oneclick_actors::vault::merchants::{
    create_union_audited, join_union_audited, load_merchant, rotate_signing_key, save_merchant,
    set_merchant_user_audited, upsert_merchant_audited, Change, CreateUnion, JoinOutcome,
    JoinUnion, LoadMerchant, MerchantChanges, RotateOutcome, RotateSigningKey, SaveMerchant,
    SaveOutcome, SetMerchantUser, UpsertMerchant,
};
use oneclick_actors::vault::merchants::{unlock_login, UnlockLogin};
use oneclick_actors::vault::DatabaseUrl;

use crate::config::Settings;

/// The demo merchant `scripts/run` seeds and the README walkthrough uses.
pub const DEMO_MERCHANT_ID: i64 = 452739;
pub const DEMO_LOGIN: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";
/// Base64 of the demo merchant's signature key (`demo-signature-key-0123456789abc`).
pub const DEMO_SIGNATURE_KEY: &str = "ZGVtby1zaWduYXR1cmUta2V5LTAxMjM0NTY3ODlhYmM=";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Apply pending database migrations.
    Migrate,
    /// Create the demo merchant (id 452739, login demo / demo-password), idempotent.
    DemoSeed,
    /// Create a merchant or update only the settings named; `show`; `rotate-signing-key`.
    Merchant(MerchantArgs),
    /// Print the audit trail (who changed what), one JSON object a line.
    Audit(AuditArgs),
    /// Set a merchant web-service user's password (argon2).
    User(UserArgs),
    /// Set a personal-account user's password (argon2): a person who signs in to the
    /// merchant's web pages (docs/account.md); separate from the web-service users of `user`.
    /// `--totp` enrols the user in the TOTP second factor (prints the otpauth:// URI once),
    /// `--no-totp` removes it.
    AccountUser(AccountUserArgs),
    /// Unions of merchants sharing customers.
    #[command(subcommand)]
    Union(UnionCommand),
    /// Master keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The backup and restore drill: `backup`, `restore`, `manifest`, `verify` (every card opens,
    /// the counts match; deploy/README.md, "Backup and restore").
    #[command(subcommand)]
    Vault(super::vault::VaultCommand),
    /// The settings: `config check` validates them and prints the NATS identity, TLS and
    /// database the service will use (never a secret).
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// A user of a merchant and its password: `admin user` (web services) and `admin account-user`
/// (personal account).
#[derive(Debug, Args)]
pub struct UserArgs {
    #[arg(long)]
    pub merchant: i64,
    #[arg(long)]
    pub login: String,
    /// The password (or set ONECLICK_ADMIN_PASSWORD).
    #[arg(long, env = "ONECLICK_ADMIN_PASSWORD")]
    pub password: String,
}

/// `admin account-user`: a personal-account user's password and its TOTP second factor. A new
/// user needs `--password`; an existing one may change its password, its second factor, or both.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").args(["password", "totp", "no_totp"]).multiple(true).required(true)))]
pub struct AccountUserArgs {
    #[arg(long)]
    pub merchant: i64,
    #[arg(long)]
    pub login: String,
    /// The password (or set ONECLICK_ADMIN_PASSWORD).
    #[arg(long, env = "ONECLICK_ADMIN_PASSWORD")]
    pub password: Option<String>,
    /// Enrol the user in TOTP (RFC 6238: SHA-1, 6 digits, 30 s): a new secret, sealed by the
    /// keyring; its otpauth:// URI is printed once, for the user's authenticator app. Replaces
    /// a secret the user had.
    #[arg(long, conflicts_with = "no_totp")]
    pub totp: bool,
    /// Remove the user's TOTP second factor.
    #[arg(long)]
    pub no_totp: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings and print what the service will connect to, and as whom.
    Check,
}

/// `admin merchant --id N [--field value]…` (create or update the named fields), or one of its
/// subcommands (`show`, `rotate-signing-key`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MerchantArgs {
    #[command(subcommand)]
    pub command: Option<MerchantCommand>,
    #[command(flatten)]
    pub set: MerchantSetArgs,
}

/// The fields of a merchant; only those given are written. Creating a merchant needs `--name`;
/// the others then default to: enabled true, mode standard, need-cvc true, threshold 1,
/// time zone Europe/Moscow, mit-cof false, no limits, a generated signature key.
#[derive(Debug, Args)]
pub struct MerchantSetArgs {
    #[arg(long, required = true)]
    pub id: Option<i64>,
    #[arg(long)]
    pub name: Option<String>,
    /// One Click enabled (true | false).
    #[arg(long)]
    pub enabled: Option<bool>,
    /// standard | saved_cards_only | save_only
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long)]
    pub need_cvc: Option<bool>,
    /// Successful payments a card needs before the payment page lists it.
    #[arg(long)]
    pub threshold: Option<i32>,
    /// IANA zone of the day/week limit windows.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Base64 HMAC key for order signatures, on creation only (generated when absent); an
    /// existing merchant's key changes only by `rotate-signing-key`.
    #[arg(long)]
    pub signature_key: Option<String>,
    #[arg(long)]
    pub mit_cof: Option<bool>,
    /// CURRENCY:DAY:WEEK in major units, `-` for none, e.g. RUB:1000.00:5000.00 (repeatable);
    /// replaces the limits of that currency only.
    #[arg(long = "limit")]
    pub limits: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Print a merchant's settings (secrets shown only as "set").
    Show {
        #[arg(long)]
        id: i64,
    },
    /// Replace the order-signature (R2) key; the old key keeps verifying during the overlap.
    RotateSigningKey {
        #[arg(long)]
        id: i64,
        /// How long the old key still verifies: e.g. 24h, 90m, 30s, 7d, 0 (stops at once).
        #[arg(long, default_value = "24h")]
        overlap: String,
        /// The new key (base64); generated and printed once when absent.
        #[arg(long)]
        signature_key: Option<String>,
    },
    /// Lift the failed-login lockout of a web-service login (docs/security/login.md): from every
    /// source, or only from `--source` (as logged: `nats:_INBOX.merchant_N`, `ip:ADDR`).
    Unlock {
        #[arg(long)]
        id: i64,
        #[arg(long)]
        login: String,
        #[arg(long)]
        source: Option<String>,
    },
    /// The merchant's NATS user in the generated users file the shipped nats.conf includes:
    /// `create`, `revoke`, `list` (deploy/README.md, "Merchant onboarding").
    NatsIdentity(super::nats_identity::NatsIdentityArgs),
}

/// `admin audit`: the newest rows of the trail, oldest first, one JSON object a line.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only rows about this merchant.
    #[arg(long)]
    pub merchant: Option<i64>,
    /// Only rows at or after this time: RFC 3339 (2026-12-06T20:00:00Z) or a UTC date (2026-12-06).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many rows (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum UnionCommand {
    /// Create a union; prints its id.
    Create {
        /// legal_entity | legal_entity_group | merchant_group
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
    },
    /// Move a merchant (and its customers) into a union; refused on colliding customer numbers.
    Join {
        #[arg(long)]
        merchant: i64,
        #[arg(long)]
        union: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a fresh key file (mode 0600): master key 1 and a fingerprint key, wrapped by the
    /// key-encryption key (KEK) of --kek-file, or the configured one (keys.kek_file, keys.kek).
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// The KEK file to wrap with; with --new-kek, a fresh KEK is written there (mode 0600).
        #[arg(long)]
        kek_file: Option<PathBuf>,
        /// Generate the KEK file named by --kek-file (never overwrites one).
        #[arg(long, requires = "kek_file")]
        new_kek: bool,
        /// Write the keys in plaintext instead (development only: loads only with
        /// keys.allow_plaintext = true).
        #[arg(long, conflicts_with_all = ["kek_file", "new_kek"])]
        plaintext: bool,
    },
    /// Write a fresh key-encryption key file (mode 0600).
    GenerateKek {
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert a plaintext key file to a wrapped one (upgrade in place; the input is left as is:
    /// delete it, and every copy, once the service runs on the new file).
    Wrap {
        /// The KEK file to wrap with (default: the configured KEK).
        #[arg(long)]
        kek_file: Option<PathBuf>,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add key n+1 to a key file and make it current (rotation step 1; then restart instances).
    /// A wrapped file is rewritten wrapped under the configured KEK.
    Add {
        #[arg(long)]
        file: PathBuf,
    },
    /// How many ciphertexts use each key version.
    Status,
    /// Re-encrypt every card and agreement to the current key, and re-seal cards still bound to
    /// their token only with their owner's associated data, in batches (one transaction each),
    /// while the service runs. Resumable: a stopped run continues where it stopped.
    #[command(alias = "reseal")]
    Rotate {
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

fn open(settings: &Settings) -> anyhow::Result<(DatabaseUrl, oneclick_actors::vault::Pool)> {
    let url = DatabaseUrl::parse(&settings.database.url)?
        .with_sqlite_synchronous(settings.database.sqlite_synchronous);
    url.run_migrations()?;
    let pool = url.pool(2)?;
    Ok((url, pool))
}

/// Keys are needed by the vault functions' signature even where they do not use them.
fn keyring_or_dummy(settings: &Settings) -> Keyring {
    crate::keys::load(&settings.keys).unwrap_or_else(|_| {
        let k = oneclick_actors::crypto::MasterKey::generate;
        #[allow(clippy::expect_used)]
        Keyring::new(vec![(1, k())], 1, k()).expect("a fresh keyring is valid")
    })
}

fn parse_limit(raw: &str) -> anyhow::Result<(String, Option<i64>, Option<i64>)> {
    let parts: Vec<&str> = raw.split(':').collect();
    let [currency, day, week] = parts[..] else {
        bail!("--limit {raw}: expected CURRENCY:DAY:WEEK")
    };
    let currency = oneclick_actors::domain::Currency::parse(currency)
        .map_err(|e| anyhow::anyhow!("--limit {raw}: {e}"))?;
    let amount = |s: &str| -> anyhow::Result<Option<i64>> {
        if s == "-" || s.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            oneclick_actors::domain::Amount::parse(s)
                .map_err(|e| anyhow::anyhow!("--limit {raw}: {e}"))?
                .minor(),
        ))
    };
    Ok((currency.as_str().to_string(), amount(day)?, amount(week)?))
}

/// `admin merchant unlock`: deletes the lockout rows; every replica reads them before argon2,
/// so the login works again at once.
fn unlock_login_of(
    settings: &Settings,
    merchant_id: i64,
    login: String,
    source: Option<String>,
    actor: &AuditActor,
) -> anyhow::Result<()> {
    let (_, pool) = open(settings)?;
    let locked = unlock_login(
        &mut *pool.get()?,
        &keyring_or_dummy(settings),
        UnlockLogin {
            merchant_id,
            login: login.clone(),
            source: source.clone(),
            now_ms: oneclick_actors::vault::now_ms(),
        },
    )?;
    println!("unlocked: {locked} locked source(s) cleared");
    let record = Record::new(actor.clone(), AuditAction::LoginUnlocked)
        .merchant(merchant_id)
        .detail(serde_json::json!({ "login": login, "source": source, "cleared": locked }));
    append_audit(
        &mut *pool.get()?,
        &keyring_or_dummy(settings),
        AppendAudit(record),
    )?;
    Ok(())
}

/// Runs one admin command as the current OS user; a key operation is then recorded in the trail.
pub fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    let actor = admin_actor();
    let file_audit = file_operation_audit(&command);
    run_command(settings, command, &actor)?;
    if let Some((action, merchant, detail)) = file_audit {
        let mut record = Record::new(actor, action).detail(detail);
        if let Some(id) = merchant {
            record = record.merchant(id);
        }
        record_outside_vault(settings, record);
    }
    Ok(())
}

/// `admin-cli:<OS user>` (`$USER`, else `$LOGNAME`). The OS user is what the operator logged in
/// as; it is as trustworthy as that login (see docs/security/audit.md).
fn admin_actor() -> AuditActor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    AuditActor::admin_cli(&user)
}

/// The audit record of an operation on files outside a vault transaction: key files and batches,
/// and the NATS users file (action, merchant, detail; never a password or hash).
fn file_operation_audit(
    command: &AdminCommand,
) -> Option<(AuditAction, Option<i64>, serde_json::Value)> {
    use super::nats_identity::{FileArg, NatsIdentityCommand};
    if let AdminCommand::Merchant(MerchantArgs {
        command: Some(MerchantCommand::NatsIdentity(args)),
        ..
    }) = command
    {
        return match &args.command {
            NatsIdentityCommand::Create {
                id,
                file: FileArg { file },
                replace,
                ..
            } => Some((
                AuditAction::NatsIdentitySet,
                Some(*id),
                serde_json::json!({ "file": file.display().to_string(), "replace": replace }),
            )),
            NatsIdentityCommand::Revoke {
                id,
                file: FileArg { file },
            } => Some((
                AuditAction::NatsIdentityRevoked,
                Some(*id),
                serde_json::json!({ "file": file.display().to_string() }),
            )),
            NatsIdentityCommand::List { .. } => None,
        };
    }
    key_operation_audit(command).map(|(action, detail)| (action, None, detail))
}

/// The audit record of a key operation made outside a vault transaction (files, batches).
fn key_operation_audit(command: &AdminCommand) -> Option<(AuditAction, serde_json::Value)> {
    match command {
        AdminCommand::Keys(KeysCommand::Generate {
            out,
            kek_file,
            new_kek,
            plaintext,
        }) => Some((
            AuditAction::KeyGenerated,
            serde_json::json!({
                "file": out.display().to_string(),
                "wrapped": !plaintext,
                "kek_file": kek_file.as_ref().map(|f| f.display().to_string()),
                "new_kek": new_kek,
            }),
        )),
        AdminCommand::Keys(KeysCommand::GenerateKek { out }) => Some((
            AuditAction::KeyGenerated,
            serde_json::json!({ "kek_file": out.display().to_string() }),
        )),
        AdminCommand::Keys(KeysCommand::Wrap { input, out, .. }) => Some((
            AuditAction::KeyGenerated,
            serde_json::json!({
                "wrapped_from": input.display().to_string(),
                "file": out.display().to_string(),
            }),
        )),
        AdminCommand::Keys(KeysCommand::Add { file }) => Some((
            AuditAction::KeyAdded,
            serde_json::json!({ "file": file.display().to_string() }),
        )),
        AdminCommand::Keys(KeysCommand::Rotate { batch }) => Some((
            AuditAction::KeysRotated,
            serde_json::json!({ "batch": batch }),
        )),
        _ => None,
    }
}

/// Appends `record` to the configured vault's trail in a transaction of its own. Best effort and
/// said so: a key file is usually written before any database exists, so a vault that is absent
/// (an SQLite file not yet created — it is not created here) or unreachable, or not yet migrated,
/// is reported on stderr and the operation still stands.
fn record_outside_vault(settings: &Settings, record: Record) {
    let url = &settings.database.url;
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if !std::path::Path::new(path).exists() {
            eprintln!("note: not recorded in the audit trail (no vault database at {path} yet)");
            return;
        }
    }
    let result = (|| -> anyhow::Result<()> {
        let url =
            DatabaseUrl::parse(url)?.with_sqlite_synchronous(settings.database.sqlite_synchronous);
        let pool = url.pool(1)?;
        append_audit(
            &mut *pool.get()?,
            &keyring_or_dummy(settings),
            AppendAudit(record),
        )?;
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("warning: not recorded in the audit trail: {e}");
    }
}

fn run_command(
    settings: &Settings,
    command: AdminCommand,
    actor: &AuditActor,
) -> anyhow::Result<()> {
    match command {
        AdminCommand::Vault(command) => super::vault::run(settings, command)?,
        AdminCommand::Config(ConfigCommand::Check) => {
            println!("{}", super::config_check::report(settings));
        }
        AdminCommand::Migrate => {
            let url = DatabaseUrl::parse(&settings.database.url)?;
            let ran = url.run_migrations()?;
            println!("migrations applied: {ran}");
        }
        AdminCommand::Keys(KeysCommand::Generate {
            out,
            kek_file,
            new_kek,
            plaintext,
        }) => {
            if plaintext {
                crate::keys::write_new_file(&out, &crate::keys::generate_plaintext_file_text())?;
                println!(
                    "wrote {} (mode 0600, PLAINTEXT: loads only with keys.allow_plaintext = true)",
                    out.display()
                );
                return Ok(());
            }
            let kek = match (&kek_file, new_kek) {
                (Some(path), true) => {
                    let kek = LocalKek::generate();
                    crate::keys::write_new_file(path, &kek.file_text())?;
                    println!(
                        "wrote the key-encryption key {} (mode 0600): keep it apart from the key \
                         file and the database",
                        path.display()
                    );
                    kek
                }
                (Some(path), false) => LocalKek::load_file(path)
                    .with_context(|| format!("--kek-file {}", path.display()))?,
                (None, _) => crate::keys::kek(&settings.keys)?.context(
                    "no key-encryption key: give --kek-file FILE (with --new-kek to make one) or \
                     configure keys.kek_file",
                )?,
            };
            let keyring = crate::keys::generate_keyring()?;
            crate::keys::write_new_file(&out, &keyring.to_wrapped_file_text(&kek)?)?;
            println!(
                "wrote {} (mode 0600, keys wrapped by the KEK): keep it secret, never commit it",
                out.display()
            );
        }
        AdminCommand::Keys(KeysCommand::GenerateKek { out }) => {
            crate::keys::write_new_file(&out, &LocalKek::generate().file_text())?;
            println!(
                "wrote {} (mode 0600): keep it apart from the key file and the database",
                out.display()
            );
        }
        AdminCommand::Keys(KeysCommand::Wrap {
            kek_file,
            input,
            out,
        }) => {
            let kek = match &kek_file {
                Some(path) => LocalKek::load_file(path)
                    .with_context(|| format!("--kek-file {}", path.display()))?,
                None => crate::keys::kek(&settings.keys)?
                    .context("no key-encryption key: give --kek-file FILE")?,
            };
            let current = crate::keys::wrap_file(&kek, &input, &out)?;
            println!(
                "wrote {} (mode 0600): the keys of {} wrapped by the KEK (current key {current}); \
                 point keys.file at it, set keys.kek_file, restart, then delete the plaintext file \
                 and its copies",
                out.display(),
                input.display()
            );
        }
        AdminCommand::Keys(KeysCommand::Add { file }) => {
            let v = crate::keys::add_rotation_key(&file, &settings.keys)?;
            println!("key {v} added and made current in {}; restart every instance, then run `oneclick admin keys rotate`", file.display());
        }
        AdminCommand::Keys(KeysCommand::Status) => {
            let keyring = crate::keys::load(&settings.keys)?;
            let (_, pool) = open(settings)?;
            let status = key_status(&mut *pool.get()?, &keyring, GetKeyStatus)?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        AdminCommand::Keys(KeysCommand::Rotate { batch }) => {
            let keyring = Arc::new(crate::keys::load(&settings.keys)?);
            let (_, pool) = open(settings)?;
            let mut total = 0;
            loop {
                let n = rotate_batch(&mut *pool.get()?, &keyring, RotateBatch { batch })?;
                if n == 0 {
                    break;
                }
                total += n;
                eprintln!("re-encrypted {total} so far");
            }
            let status = key_status(&mut *pool.get()?, &keyring, GetKeyStatus)?;
            println!(
                "re-encrypted {total}; now: {}",
                serde_json::to_string(&status)?
            );
        }
        AdminCommand::DemoSeed => {
            let (_, pool) = open(settings)?;
            let keyring = keyring_or_dummy(settings);
            let mut conn = pool.get()?;
            let conn = &mut *conn;
            upsert_merchant_audited(
                conn,
                &keyring,
                UpsertMerchant {
                    id: DEMO_MERCHANT_ID,
                    name: "Demo shop".into(),
                    oneclick_enabled: true,
                    mode: "standard".into(),
                    need_cvc: true,
                    list_threshold: 1,
                    time_zone: "Europe/Moscow".into(),
                    signature_key: DEMO_SIGNATURE_KEY.into(),
                    mit_cof: true,
                    limits: vec![("RUB".into(), Some(10_000_000), Some(50_000_000))],
                },
                actor.clone(),
            )?;
            set_merchant_user_audited(
                conn,
                &keyring,
                SetMerchantUser {
                    merchant_id: DEMO_MERCHANT_ID,
                    login: DEMO_LOGIN.into(),
                    password_hash: hash_password(DEMO_PASSWORD)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                },
                actor.clone(),
            )?;
            println!(
                "demo merchant {DEMO_MERCHANT_ID}: login {DEMO_LOGIN} / {DEMO_PASSWORD}, signature key (base64) {DEMO_SIGNATURE_KEY}, RUB limits 100000.00/day 500000.00/week"
            );
        }
        AdminCommand::Merchant(MerchantArgs {
            command: Some(MerchantCommand::Unlock { id, login, source }),
            ..
        }) => unlock_login_of(settings, id, login, source, actor)?,
        AdminCommand::Merchant(MerchantArgs {
            command: Some(MerchantCommand::NatsIdentity(args)),
            ..
        }) => super::nats_identity::run(settings, args.command)?,
        AdminCommand::Merchant(MerchantArgs {
            command: Some(MerchantCommand::Show { id }),
            ..
        }) => {
            let (_, pool) = open(settings)?;
            let merchant = load_merchant(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                LoadMerchant { merchant_id: id },
            )?
            .with_context(|| format!("unknown merchant {id}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&merchant_view(&merchant))?
            );
        }
        AdminCommand::Merchant(MerchantArgs {
            command:
                Some(MerchantCommand::RotateSigningKey {
                    id,
                    overlap,
                    signature_key,
                }),
            ..
        }) => {
            let overlap = parse_overlap(&overlap)?;
            let (new_key, generated) = signature_key_or_generated(signature_key)?;
            let (_, pool) = open(settings)?;
            let outcome = rotate_signing_key(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                RotateSigningKey {
                    merchant_id: id,
                    new_key: new_key.clone(),
                    overlap_ms: i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX / 2),
                    actor: actor.clone(),
                    now_ms: oneclick_actors::vault::now_ms(),
                },
            )?;
            match outcome {
                RotateOutcome::UnknownMerchant => bail!("unknown merchant {id}"),
                RotateOutcome::Rotated { changes, .. } => {
                    println!("merchant {id}: signing key rotated");
                    print_changes(&changes);
                    if generated {
                        println!("new signature key (base64, shown once): {new_key}");
                    }
                }
            }
        }
        AdminCommand::Merchant(MerchantArgs { command: None, set }) => {
            let id = set.id.context("--id is required")?;
            if let Some(mode) = &set.mode {
                oneclick_actors::domain::MerchantMode::parse(mode).map_err(|_| {
                    anyhow::anyhow!("--mode: expected standard, saved_cards_only or save_only")
                })?;
            }
            if let Some(zone) = &set.time_zone {
                oneclick_actors::domain::limits::parse_time_zone(zone)
                    .map_err(|_| anyhow::anyhow!("--time-zone: not an IANA zone"))?;
            }
            if set.threshold.is_some_and(|t| t < 1) {
                bail!("--threshold: at least 1");
            }
            let limits = set
                .limits
                .iter()
                .map(|l| parse_limit(l))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (_, pool) = open(settings)?;
            let keyring = keyring_or_dummy(settings);
            let mut conn = pool.get()?;
            let exists =
                load_merchant(&mut conn, &keyring, LoadMerchant { merchant_id: id })?.is_some();
            if exists && set.signature_key.is_some() {
                bail!("merchant {id} exists: its signature key changes only by `oneclick admin merchant rotate-signing-key --id {id}`");
            }
            let (signature_key, generated) = if exists {
                (None, false)
            } else {
                let (key, generated) = signature_key_or_generated(set.signature_key)?;
                (Some(key), generated)
            };
            let outcome = save_merchant(
                &mut conn,
                &keyring,
                SaveMerchant {
                    id,
                    changes: MerchantChanges {
                        name: set.name,
                        oneclick_enabled: set.enabled,
                        mode: set.mode,
                        need_cvc: set.need_cvc,
                        list_threshold: set.threshold,
                        time_zone: set.time_zone,
                        mit_cof: set.mit_cof,
                        limits,
                    },
                    signature_key: signature_key.clone(),
                    actor: actor.clone(),
                },
            )?;
            match outcome {
                SaveOutcome::Created(changes) => {
                    println!("merchant {id} created");
                    print_changes(&changes);
                    if let (true, Some(key)) = (generated, signature_key) {
                        println!("generated signature key (base64, shown once): {key}");
                    }
                }
                SaveOutcome::Updated(changes) => {
                    println!("merchant {id} updated");
                    print_changes(&changes);
                }
                SaveOutcome::Unchanged => println!("merchant {id}: nothing changed"),
                SaveOutcome::MissingForCreation(field) => bail!(
                    "merchant {id} does not exist; creating it needs --{}",
                    field.replace('_', "-")
                ),
                SaveOutcome::SigningKeyExists => bail!(
                    "merchant {id} exists: its signature key changes only by `oneclick admin merchant rotate-signing-key --id {id}`"
                ),
            }
        }
        AdminCommand::Audit(args) => {
            let since_ms = args.since.as_deref().map(parse_since).transpose()?;
            let (_, pool) = open(settings)?;
            let rows = list_audit(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                ListAudit {
                    merchant_id: args.merchant,
                    since_ms,
                    limit: args.limit,
                },
            )?;
            for row in rows {
                println!("{}", serde_json::to_string(&row)?);
            }
        }
        AdminCommand::User(UserArgs {
            merchant,
            login,
            password,
        }) => {
            let hash = hashed(&login, &password)?;
            let (_, pool) = open(settings)?;
            let changes = set_merchant_user_audited(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                SetMerchantUser {
                    merchant_id: merchant,
                    login,
                    password_hash: hash,
                },
                actor.clone(),
            )?;
            println!("user saved");
            print_changes(&changes);
        }
        AdminCommand::AccountUser(args) => account_user(settings, args, actor)?,
        AdminCommand::Union(UnionCommand::Create { kind, name }) => {
            if !["legal_entity", "legal_entity_group", "merchant_group"].contains(&kind.as_str()) {
                bail!("--kind: expected legal_entity, legal_entity_group or merchant_group");
            }
            let (_, pool) = open(settings)?;
            let id = create_union_audited(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                CreateUnion { kind, name },
                actor.clone(),
            )?;
            println!("{id}");
        }
        AdminCommand::Union(UnionCommand::Join { merchant, union }) => {
            let (_, pool) = open(settings)?;
            match join_union_audited(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                JoinUnion {
                    merchant_id: merchant,
                    union_id: union,
                },
                actor.clone(),
            )? {
                JoinOutcome::Joined { customers_moved } => {
                    println!("joined; {customers_moved} customers moved")
                }
                JoinOutcome::UnknownMerchant => bail!("unknown merchant {merchant}"),
                JoinOutcome::UnknownUnion => bail!("unknown union {union}"),
                JoinOutcome::SharedUnion => {
                    bail!("merchant {merchant} shares its union with other merchants")
                }
                JoinOutcome::Collision(numbers) => bail!(
                    "refused: these customer numbers exist in both: {}",
                    numbers.join(", ")
                ),
            }
        }
    }
    Ok(())
}

/// Prints what an admin command changed, one `field: old → new` a line (secrets as "set").
fn print_changes(changes: &[Change]) {
    for change in changes {
        println!("  {change}");
    }
}

/// The given base64 key (checked), or a fresh random one; `true` when generated.
fn signature_key_or_generated(given: Option<String>) -> anyhow::Result<(String, bool)> {
    match given {
        Some(k) => {
            base64::engine::general_purpose::STANDARD
                .decode(&k)
                .context("--signature-key: not base64")?;
            Ok((k, false))
        }
        None => Ok((
            oneclick_actors::crypto::MasterKey::generate()
                .to_base64()
                .as_str()
                .to_string(),
            true,
        )),
    }
}

/// The argon2 hash of a new password, after the original's length limits (login ≤ 20, password ≤ 30).
/// `admin account-user`: the password first (so a new user can be enrolled in one command),
/// then the second factor.
fn account_user(
    settings: &Settings,
    args: AccountUserArgs,
    actor: &AuditActor,
) -> anyhow::Result<()> {
    use oneclick_actors::crypto::totp::TotpSecret;
    use oneclick_actors::vault::accounts::{
        set_account_user_audited, set_account_user_totp_audited, TotpChange,
    };
    let AccountUserArgs {
        merchant,
        login,
        password,
        totp,
        no_totp,
    } = args;
    let hash = password.map(|p| hashed(&login, &p)).transpose()?;
    // The secret is sealed by the service's keyring: no dummy keys here.
    let keyring = if totp {
        Some(crate::keys::load(&settings.keys).context("--totp seals the secret with the keys")?)
    } else {
        None
    };
    let (_, pool) = open(settings)?;
    let mut conn = pool.get()?;
    if let Some(hash) = hash {
        let existed = set_account_user_audited(&mut conn, merchant, &login, &hash, actor.clone())?;
        println!(
            "personal-account user {} (merchant {merchant}, login {login:?})",
            if existed { "updated" } else { "created" }
        );
    }
    if let Some(keyring) = keyring {
        let secret = TotpSecret::generate()?;
        let uri = secret.otpauth_uri(merchant, &login)?;
        match set_account_user_totp_audited(
            &mut conn,
            &keyring,
            merchant,
            &login,
            Some(&secret),
            actor.clone(),
        )? {
            TotpChange::UnknownUser => bail!(
                "no personal-account user {login:?} of merchant {merchant}: create it with --password"
            ),
            change => {
                let replaced = matches!(change, TotpChange::Enrolled { replaced: true });
                println!(
                    "TOTP enrolled{} (merchant {merchant}, login {login:?}); hand this URI to the user once, for an authenticator app (it is the secret, shown only now):",
                    if replaced { ", the previous secret no longer works" } else { "" }
                );
                println!("{}", uri.as_str());
            }
        }
    } else if no_totp {
        let keyring = keyring_or_dummy(settings);
        match set_account_user_totp_audited(
            &mut conn,
            &keyring,
            merchant,
            &login,
            None,
            actor.clone(),
        )? {
            TotpChange::UnknownUser => {
                bail!("no personal-account user {login:?} of merchant {merchant}")
            }
            TotpChange::NothingToRemove => {
                println!("personal-account user {login:?} of merchant {merchant} had no TOTP: nothing changed")
            }
            _ => println!("TOTP removed (merchant {merchant}, login {login:?})"),
        }
    }
    Ok(())
}

fn hashed(login: &str, password: &str) -> anyhow::Result<String> {
    if login.is_empty() || login.chars().count() > 20 || password.chars().count() > 30 {
        bail!("login is 1 to 20 characters and password at most 30 (the original's limits)");
    }
    hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `24h`, `90m`, `30s`, `7d`, `1500ms` or `0`.
fn parse_overlap(raw: &str) -> anyhow::Result<std::time::Duration> {
    let raw = raw.trim();
    if raw == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .with_context(|| {
            format!("--overlap {raw}: expected a number and a unit (ms, s, m, h, d)")
        })?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("--overlap {raw}: not a number"))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("--overlap {raw}: unit must be ms, s, m, h or d"),
    };
    let ms = n
        .checked_mul(ms_per_unit)
        .filter(|&ms| ms <= 366 * 86_400_000)
        .with_context(|| format!("--overlap {raw}: at most 366d"))?;
    Ok(std::time::Duration::from_millis(ms))
}

/// RFC 3339 or a UTC date, as ms since the epoch.
fn parse_since(raw: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.timestamp_millis());
    }
    let date = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .with_context(|| format!("--since {raw}: expected RFC 3339 or YYYY-MM-DD"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default())
}

/// `admin merchant show`: every setting, secrets only as "set".
fn merchant_view(m: &oneclick_actors::vault::records::MerchantRecord) -> serde_json::Value {
    let now = oneclick_actors::vault::now_ms();
    let limits: serde_json::Map<String, serde_json::Value> = m
        .limits
        .iter()
        .map(|(currency, l)| {
            let show = |a: Option<oneclick_actors::domain::Amount>| {
                a.map_or_else(|| "unlimited".to_string(), |a| a.to_string())
            };
            (
                currency.clone(),
                serde_json::json!({ "day": show(l.day), "week": show(l.week) }),
            )
        })
        .collect();
    let mut users: Vec<&String> = m.users.keys().collect();
    users.sort();
    let users: serde_json::Map<String, serde_json::Value> = users
        .into_iter()
        .map(|login| (login.clone(), serde_json::json!({ "password": "set" })))
        .collect();
    serde_json::json!({
        "id": m.id,
        "name": m.name,
        "union_id": m.union_id,
        "oneclick_enabled": m.oneclick_enabled,
        "mode": m.mode.as_str(),
        "need_cvc": m.need_cvc,
        "list_threshold": m.list_threshold,
        "time_zone": m.time_zone.name(),
        "mit_cof": m.mit_cof,
        "signature_key": "set",
        "previous_signature_key": match &m.previous_signature_key {
            Some((_, until)) if *until > now => format!("set, verifies until {}", format_ms(*until)),
            Some((_, until)) => format!("expired at {}", format_ms(*until)),
            None => "none".to_string(),
        },
        "limits": limits,
        "users": users,
    })
}

#[cfg(test)]
mod unlock_tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Admin {
        #[command(subcommand)]
        command: AdminCommand,
    }

    #[test]
    fn merchant_unlock_parses_beside_the_settings_form() {
        let unlock = Admin::try_parse_from([
            "admin", "merchant", "unlock", "--id", "7", "--login", "demo",
        ])
        .expect("unlock parses");
        assert!(matches!(
            unlock.command,
            AdminCommand::Merchant(MerchantArgs {
                command: Some(MerchantCommand::Unlock { id: 7, ref login, source: None }),
                ..
            }) if login == "demo"
        ));
        let set = Admin::try_parse_from(["admin", "merchant", "--id", "7", "--mode", "save_only"])
            .expect("settings parse");
        assert!(matches!(
            set.command,
            AdminCommand::Merchant(MerchantArgs { command: None, ref set }) if set.id == Some(7) && set.mode.as_deref() == Some("save_only")
        ));
        assert!(Admin::try_parse_from(["admin", "merchant", "--mode", "standard"]).is_err());
    }
}
