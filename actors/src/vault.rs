//! The vault: the only place with SQL. An actix `SyncArbiter` of [`Vault`] actors, each running
//! Diesel over one r2d2 pool, holds merchants, unions, customers, encrypted cards, orders,
//! recurring agreements and processed commands, on PostgreSQL (production) or SQLite (the
//! embedded single-node default) through one code path ([`connection::AnyConnection`]).
//!
//! Invariants kept here:
//! - a PAN is written only as AES-256-GCM ciphertext bound to its row and owner
//!   (`crypto::card_owner_aad`, `cards.aad_version` 2), next to a keyed fingerprint; no column
//!   can hold a CVC;
//! - every write transaction of a customer starts with `UPDATE customers SET version = version+1`,
//!   which is the cross-process lock for that customer (a row lock on PostgreSQL, the database
//!   write lock on SQLite), so limit checks (R12) stay true with several oneclick processes;
//! - a command's stored result commits in the same transaction as its effect (R16);
//! - handlers never panic: a panic would silently remove a `SyncArbiter` worker (docs/stack.md), so
//!   every r2d2/Diesel/crypto failure becomes a [`VaultError`].

pub mod accounts;
pub mod audit;
pub mod batch;
pub mod connection;
pub mod customers;
pub mod group_commit;
pub mod keys;
pub mod merchants;
pub mod payments;
pub mod prepared;
pub mod records;
pub mod rows;
pub mod schema;

use std::sync::Arc;

use actix::{Actor, Addr, SyncArbiter, SyncContext};

use crate::crypto::{CryptoError, Keyring};
pub use connection::{AnyConnection, Backend, DatabaseUrl, Pool, SqliteSync};

/// Failures of the vault layer. None of them carries card data.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault configuration: {0}")]
    Config(String),
    #[error("cannot connect to the vault database: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("card encryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl VaultError {
    /// True when retrying the same operation later may succeed (connection loss, serialization
    /// failure, a deadlock victim between two processes' group commits, SQLite's busy lock), as
    /// opposed to a bug or bad data.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            VaultError::Connect(_) | VaultError::Pool(_) => true,
            VaultError::Query(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::SerializationFailure
                        | DatabaseErrorKind::ClosedConnection
                        | DatabaseErrorKind::UnableToSendCommand
                ) || info.message().contains("deadlock detected")
                    || info.message().contains("database is locked")
            }
            VaultError::Query(Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

/// One vault worker. Workers share the pool and the keyring; each handles one message at a time
/// on its own thread, so a pool of N connections is served by N workers.
pub struct Vault {
    pool: Pool,
    keyring: Arc<Keyring>,
}

impl Actor for Vault {
    type Context = SyncContext<Self>;
}

impl Vault {
    /// Starts `workers` vault actors over `pool`.
    pub fn start(pool: Pool, keyring: Arc<Keyring>, workers: usize) -> Addr<Vault> {
        SyncArbiter::start(workers.max(1), move || Vault {
            pool: pool.clone(),
            keyring: keyring.clone(),
        })
    }

    fn conn(&self) -> Result<connection::PooledConnection, VaultError> {
        Ok(self.pool.get()?)
    }
}

/// Declares a vault message `$msg` answered by the function `$fun(conn, keyring, msg)`.
/// The functions are plain (no actor) so the admin CLI and tests can call them directly.
macro_rules! vault_message {
    ($msg:ty => $ret:ty, $fun:path) => {
        impl actix::Message for $msg {
            type Result = Result<$ret, $crate::vault::VaultError>;
        }
        impl actix::Handler<$msg> for $crate::vault::Vault {
            type Result = Result<$ret, $crate::vault::VaultError>;
            fn handle(&mut self, msg: $msg, _: &mut Self::Context) -> Self::Result {
                let mut conn = self.conn()?;
                $fun(&mut conn, &self.keyring, msg)
            }
        }
    };
}
pub(crate) use vault_message;

/// Runs `$body` with `$c` bound to the concrete connection, for the few statements the shared
/// backend cannot express (`RETURNING`, `ON CONFLICT DO NOTHING`). Inside a transaction the
/// concrete connection is the same session, so the statement joins that transaction. Exported
/// for the benchmark's database baseline, which runs the engine's prepared statements.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::vault::AnyConnection::Postgresql($c) => $body,
            $crate::vault::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use crate::on_backend;

/// Milliseconds since the Unix epoch, UTC: the one time format in the database.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
