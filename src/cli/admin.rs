//! `oneclick admin …`: migrations, merchants and their web-service users, unions, demo data, and
//! master keys (generate — wrapped by a key-encryption key —, wrap a plaintext key file, status,
//! online rotation and re-seal). Runs against the vault database directly.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::{Args, Subcommand};
use oneclick_actors::crypto::{Keyring, LocalKek};
use oneclick_actors::engine::merchants::hash_password;
use oneclick_actors::vault::keys::{key_status, rotate_batch, GetKeyStatus, RotateBatch};
use oneclick_actors::vault::merchants::{
    create_union, join_union, set_merchant_user, upsert_merchant, CreateUnion, JoinOutcome,
    JoinUnion, SetMerchantUser, UpsertMerchant,
};
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
    /// Create or update a merchant's One Click settings.
    Merchant(MerchantArgs),
    /// Set a merchant web-service user's password (argon2).
    User {
        #[arg(long)]
        merchant: i64,
        #[arg(long)]
        login: String,
        /// The password (or set ONECLICK_ADMIN_PASSWORD).
        #[arg(long, env = "ONECLICK_ADMIN_PASSWORD")]
        password: String,
    },
    /// Unions of merchants sharing customers.
    #[command(subcommand)]
    Union(UnionCommand),
    /// Master keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Args)]
pub struct MerchantArgs {
    #[arg(long)]
    pub id: i64,
    #[arg(long, default_value = "")]
    pub name: String,
    /// One Click enabled.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// standard | saved_cards_only | save_only
    #[arg(long, default_value = "standard")]
    pub mode: String,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub need_cvc: bool,
    /// Successful payments a card needs before the payment page lists it.
    #[arg(long, default_value_t = 1)]
    pub threshold: i32,
    /// IANA zone of the day/week limit windows.
    #[arg(long, default_value = "Europe/Moscow")]
    pub time_zone: String,
    /// Base64 HMAC key for order signatures; generated when absent on creation.
    #[arg(long)]
    pub signature_key: Option<String>,
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub mit_cof: bool,
    /// CURRENCY:DAY:WEEK in major units, `-` for none, e.g. RUB:1000.00:5000.00 (repeatable).
    #[arg(long = "limit")]
    pub limits: Vec<String>,
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

pub fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    match command {
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
            upsert_merchant(
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
            )?;
            set_merchant_user(
                conn,
                &keyring,
                SetMerchantUser {
                    merchant_id: DEMO_MERCHANT_ID,
                    login: DEMO_LOGIN.into(),
                    password_hash: hash_password(DEMO_PASSWORD)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                },
            )?;
            println!(
                "demo merchant {DEMO_MERCHANT_ID}: login {DEMO_LOGIN} / {DEMO_PASSWORD}, signature key (base64) {DEMO_SIGNATURE_KEY}, RUB limits 100000.00/day 500000.00/week"
            );
        }
        AdminCommand::Merchant(m) => {
            let (_, pool) = open(settings)?;
            let keyring = keyring_or_dummy(settings);
            oneclick_actors::domain::MerchantMode::parse(&m.mode).map_err(|_| {
                anyhow::anyhow!("--mode: expected standard, saved_cards_only or save_only")
            })?;
            oneclick_actors::domain::limits::parse_time_zone(&m.time_zone)
                .map_err(|_| anyhow::anyhow!("--time-zone: not an IANA zone"))?;
            let signature_key = match m.signature_key {
                Some(k) => {
                    base64::engine::general_purpose::STANDARD
                        .decode(&k)
                        .context("--signature-key: not base64")?;
                    k
                }
                None => {
                    let k = oneclick_actors::crypto::MasterKey::generate()
                        .to_base64()
                        .as_str()
                        .to_string();
                    println!("generated signature key (base64): {k}");
                    k
                }
            };
            let limits = m
                .limits
                .iter()
                .map(|l| parse_limit(l))
                .collect::<anyhow::Result<Vec<_>>>()?;
            upsert_merchant(
                &mut *pool.get()?,
                &keyring,
                UpsertMerchant {
                    id: m.id,
                    name: m.name,
                    oneclick_enabled: m.enabled,
                    mode: m.mode,
                    need_cvc: m.need_cvc,
                    list_threshold: m.threshold,
                    time_zone: m.time_zone,
                    signature_key,
                    mit_cof: m.mit_cof,
                    limits,
                },
            )?;
            println!("merchant {} saved", m.id);
        }
        AdminCommand::User {
            merchant,
            login,
            password,
        } => {
            if login.chars().count() > 20 || password.chars().count() > 30 {
                bail!("login is at most 20 characters and password at most 30 (the original's limits)");
            }
            let (_, pool) = open(settings)?;
            let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
            set_merchant_user(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                SetMerchantUser {
                    merchant_id: merchant,
                    login,
                    password_hash: hash,
                },
            )?;
            println!("user saved");
        }
        AdminCommand::Union(UnionCommand::Create { kind, name }) => {
            if !["legal_entity", "legal_entity_group", "merchant_group"].contains(&kind.as_str()) {
                bail!("--kind: expected legal_entity, legal_entity_group or merchant_group");
            }
            let (_, pool) = open(settings)?;
            let id = create_union(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                CreateUnion { kind, name },
            )?;
            println!("{id}");
        }
        AdminCommand::Union(UnionCommand::Join { merchant, union }) => {
            let (_, pool) = open(settings)?;
            match join_union(
                &mut *pool.get()?,
                &keyring_or_dummy(settings),
                JoinUnion {
                    merchant_id: merchant,
                    union_id: union,
                },
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
