//! The engine's error: every way a command can fail, mapped once onto the public [`Fault`].
//!
//! Below the customer actors and the engine facade, above the vault and the domain, so that the
//! actors, the decisions and the facade share one error without importing each other. Causes are
//! logged by whoever meets them, never card data; a client sees only the fault.

use actix::MailboxError;

use crate::domain::DomainError;
use crate::fault::Fault;
use crate::vault::VaultError;

/// Every way a command can fail. [`EngineError::fault`] is the public face.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    Fault(Fault),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("actor mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    /// The customer actor went idle meanwhile; the engine retries with a fresh one.
    #[error("customer actor retired")]
    Retired,
}

impl From<Fault> for EngineError {
    fn from(f: Fault) -> Self {
        EngineError::Fault(f)
    }
}

impl EngineError {
    pub fn fault(&self) -> Fault {
        match self {
            EngineError::Domain(e) => e.fault(),
            EngineError::Fault(f) => *f,
            EngineError::Vault(e) if e.is_transient() => Fault::Unavailable,
            EngineError::Vault(_) => Fault::Internal,
            EngineError::Mailbox(_) | EngineError::Retired => Fault::Unavailable,
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Flattens an actor's reply: a mailbox error or a vault error into [`EngineError`].
pub(crate) fn flatten<T>(sent: Result<Result<T, VaultError>, MailboxError>) -> EngineResult<T> {
    Ok(sent??)
}
