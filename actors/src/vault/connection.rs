//! Connections to the vault database: one [`AnyConnection`] type over PostgreSQL and SQLite, an
//! r2d2 pool whose manager picks the backend from the URL scheme (never by trial: a PostgreSQL URL
//! whose server is down must fail, not silently create an SQLite file), per-connection SQLite
//! pragmas, and the embedded migrations of both flavours.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::VaultError;

/// One connection to either backend; queries written against it run on both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A parsed database location.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the driver receives: the full URL for PostgreSQL, the file path for SQLite.
    target: String,
    /// SQLite `synchronous` pragma (`FULL` by default: an acknowledged payment survives power loss).
    pub sqlite_synchronous: SqliteSync,
}

impl std::fmt::Debug for DatabaseUrl {
    // URLs may carry a password: show only the backend.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.backend)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    #[default]
    Full,
    Normal,
}

impl DatabaseUrl {
    /// `postgres://…` / `postgresql://…` or `sqlite://PATH` / `sqlite:PATH`.
    pub fn parse(url: &str) -> Result<DatabaseUrl, VaultError> {
        let (backend, target) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                (Backend::Postgres, url.to_string())
            } else if let Some(path) = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            {
                if path.is_empty() || path == ":memory:" {
                    return Err(VaultError::Config(
                        "an SQLite vault needs a file path (sqlite://PATH)".into(),
                    ));
                }
                (Backend::Sqlite, path.to_string())
            } else {
                return Err(VaultError::Config(
                    "database.url must start with postgres:// or sqlite://".into(),
                ));
            };
        Ok(DatabaseUrl {
            backend,
            target,
            sqlite_synchronous: SqliteSync::Full,
        })
    }

    pub fn with_sqlite_synchronous(mut self, sync: SqliteSync) -> Self {
        self.sqlite_synchronous = sync;
        self
    }

    /// Opens one connection with the per-connection settings applied.
    pub fn connect(&self) -> Result<AnyConnection, VaultError> {
        match self.backend {
            Backend::Postgres => {
                let conn = PgConnection::establish(&self.target)
                    .map_err(|e| VaultError::Connect(redact_url(&e.to_string())))?;
                Ok(AnyConnection::Postgresql(conn))
            }
            Backend::Sqlite => {
                if let Some(parent) = std::path::Path::new(&self.target).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            VaultError::Connect(format!("cannot create {}: {e}", parent.display()))
                        })?;
                    }
                }
                let mut conn = SqliteConnection::establish(&self.target)
                    .map_err(|e| VaultError::Connect(e.to_string()))?;
                let sync = match self.sqlite_synchronous {
                    SqliteSync::Full => "FULL",
                    SqliteSync::Normal => "NORMAL",
                };
                // WAL: readers never block the writer (measured 0.75k → 19k+ payments/s);
                // busy_timeout: writers from other connections wait instead of failing.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
                ))?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    /// Applies pending migrations of the matching flavour; returns how many ran.
    pub fn run_migrations(&self) -> Result<usize, VaultError> {
        let ran = match self.connect()? {
            AnyConnection::Postgresql(mut c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map_err(|e| VaultError::Migration(e.to_string()))?
                .len(),
            AnyConnection::Sqlite(mut c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| VaultError::Migration(e.to_string()))?
                .len(),
        };
        Ok(ran)
    }

    /// An r2d2 pool of `size` connections.
    pub fn pool(&self, size: u32) -> Result<Pool, VaultError> {
        r2d2::Pool::builder()
            .max_size(size)
            .connection_timeout(Duration::from_secs(10))
            .build(Manager { url: self.clone() })
            .map_err(|e| VaultError::Connect(redact_url(&e.to_string())))
    }
}

/// Takes SQLite's write lock at the start of a write transaction (PostgreSQL: nothing to do).
///
/// SQLite transactions begin deferred: one that reads first holds a read snapshot, and its first
/// write then fails at once with `SQLITE_BUSY` ("database is locked", without waiting for
/// `busy_timeout`) if another connection committed meanwhile. A write statement first (this
/// no-op `UPDATE`) waits for the lock instead, as `BEGIN IMMEDIATE` would.
pub(crate) fn lock_for_writing(conn: &mut AnyConnection) -> Result<(), VaultError> {
    if let AnyConnection::Sqlite(c) = conn {
        c.batch_execute("UPDATE unions SET id = id WHERE 0")?;
    }
    Ok(())
}

/// Removes anything that looks like `user:password@` from an error text.
fn redact_url(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://***{}", &text[..start], &text[at..]),
        _ => text.to_string(),
    }
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// r2d2 manager choosing the backend from the URL.
#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = VaultError;

    fn connect(&self) -> Result<AnyConnection, VaultError> {
        self.url.connect()
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), VaultError> {
        conn.batch_execute("SELECT 1").map_err(VaultError::from)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_picks_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u:p@h/db")
                .map(|u| u.backend)
                .ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://x/y.db")
                .map(|u| u.backend)
                .ok(),
            Some(Backend::Sqlite)
        );
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn connection_errors_hide_the_password() {
        assert_eq!(
            redact_url("bad postgres://u:secret@h/db"),
            "bad postgres://***@h/db"
        );
    }
}
