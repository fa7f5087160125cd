//! Connections to the vault database: one [`AnyConnection`] type over PostgreSQL and SQLite, an
//! r2d2 pool whose manager picks the backend from the URL scheme (never by trial: a PostgreSQL URL
//! whose server is down must fail, not silently create an SQLite file), per-connection SQLite
//! pragmas, the embedded migrations of both flavours, and the count of database round trips.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
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

impl AnyConnection {
    /// The database this connection talks to.
    pub fn backend(&self) -> Backend {
        match self {
            AnyConnection::Postgresql(_) => Backend::Postgres,
            AnyConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// SQLite's automatic checkpoint threshold in WAL pages (its default is 1,000): a backstop. The
/// engine's checkpointer (`group_commit::start_checkpointer`) keeps the WAL far below it; a
/// process without one (the admin commands) still checkpoints, at most every ~40 MB of WAL.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

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
                // busy_timeout: writers from other connections wait instead of failing;
                // wal_autocheckpoint: a backstop, the engine checkpoints in its own thread.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
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
        diesel::RunQueryDsl::execute(super::prepared::LockForWriting {}, c)?;
    }
    Ok(())
}

/// Database round trips of every pooled connection since the process started.
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// How many round trips the vault's pooled connections have made to the database since start:
/// every statement (`BEGIN`, `COMMIT` and savepoints included; a simple query of several
/// statements is one) and every preparation of a statement for the cache (PostgreSQL sends it
/// before the statement's first run). On SQLite each is a library call, not a network round
/// trip, but counted the same. Exported as `oneclick_vault_round_trips`; the benchmark divides
/// it by the operations of each window (docs/performance.md).
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

/// A pooled connection that answered a statement this recently is not checked on checkout.
pub const VALIDATION_BYPASS: Duration = Duration::from_millis(500);

/// Diesel instrumentation of every pooled connection: counts its round trips ([`round_trips`])
/// and remembers when it last answered a statement without error (for [`Manager::is_valid`]).
/// It never looks at a query's text or binds: they can hold card data.
#[derive(Default)]
struct Watch {
    last_ok: Option<Instant>,
}

impl Instrumentation for Watch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } | InstrumentationEvent::CacheQuery { .. } => {
                ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
            }
            InstrumentationEvent::FinishQuery { error: None, .. } => {
                self.last_ok = Some(Instant::now());
            }
            _ => {}
        }
    }
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
        let mut conn = self.url.connect()?;
        conn.set_instrumentation(Watch::default());
        Ok(conn)
    }

    /// On checkout. A connection that answered a statement within [`VALIDATION_BYPASS`] is
    /// handed out as is; an older one is asked `SELECT 1` first (HikariCP's "alive bypass
    /// window": the check is one round trip, and a connection that just answered is as alive as
    /// a check would show a moment later).
    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), VaultError> {
        let recently_ok = conn
            .instrumentation()
            .downcast_ref::<Watch>()
            .and_then(|w| w.last_ok)
            .is_some_and(|t| t.elapsed() < VALIDATION_BYPASS);
        if recently_ok {
            return Ok(());
        }
        conn.batch_execute("SELECT 1").map_err(VaultError::from)
    }

    /// On return to the pool: a connection whose transaction state diesel could not restore
    /// (a failed `ROLLBACK`) is dropped instead of handed out again.
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(conn)
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
