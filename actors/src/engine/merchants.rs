//! Merchant settings and web-service credentials, cached so the hot path touches neither the
//! database nor argon2 (about 16 ms a verification, STACK.md).
//!
//! - Settings are cached per merchant for `merchant_cache` (negative answers too), so an admin
//!   change reaches every process within that time.
//! - A credential is verified with argon2 once, on a blocking thread; then the keyed digest of
//!   (merchant, login, password, stored hash) is remembered for `credential_cache`. A later
//!   request is accepted without argon2 only if its digest matches, so a wrong password, a
//!   changed password or a changed hash always goes back to argon2. No password is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use super::requests::Credentials;
use super::{flatten, EngineError, EngineResult};
use crate::crypto::Keyring;
use crate::fault::Fault;
use crate::vault::merchants::LoadMerchant;
use crate::vault::records::MerchantRecord;
use crate::vault::Vault;

type Cached = (Instant, Option<Arc<MerchantRecord>>);
/// (merchant, login) → (verified at, keyed digest of the verified credential).
type VerifiedCredentials = HashMap<(i64, String), (Instant, [u8; 32])>;

#[derive(Clone)]
pub struct MerchantCache {
    vault: Addr<Vault>,
    ttl: Duration,
    credential_ttl: Duration,
    merchants: Arc<Mutex<HashMap<i64, Cached>>>,
    credentials: Arc<Mutex<VerifiedCredentials>>,
}

impl MerchantCache {
    pub fn new(vault: Addr<Vault>, ttl: Duration, credential_ttl: Duration) -> MerchantCache {
        MerchantCache {
            vault,
            ttl,
            credential_ttl,
            merchants: Default::default(),
            credentials: Default::default(),
        }
    }

    pub async fn get(&self, merchant_id: i64) -> EngineResult<Arc<MerchantRecord>> {
        let cached = {
            let map = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&merchant_id)
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, m)| m.clone())
        };
        let found = match cached {
            Some(found) => found,
            None => {
                let loaded =
                    flatten(self.vault.send(LoadMerchant { merchant_id }).await)?.map(Arc::new);
                let mut map = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(merchant_id, (Instant::now(), loaded.clone()));
                loaded
            }
        };
        found.ok_or(EngineError::Fault(Fault::UnknownMerchant))
    }

    pub fn invalidate(&self, merchant_id: i64) {
        self.merchants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&merchant_id);
    }

    /// Verifies a web-service user; see the module header for the cache.
    pub async fn authenticate_with(
        &self,
        keyring: &Keyring,
        credentials: &Credentials,
    ) -> EngineResult<Arc<MerchantRecord>> {
        if credentials.login.chars().count() > 20
            || credentials.password.expose().chars().count() > 30
        {
            return Err(Fault::FieldTooLong.into());
        }
        if credentials.login.is_empty() || credentials.password.expose().is_empty() {
            return Err(Fault::MissingField.into());
        }
        let merchant = self.get(credentials.merchant_id).await?;
        let Some(hash) = merchant.users.get(&credentials.login).cloned() else {
            return Err(Fault::AuthenticationFailed.into());
        };
        let digest = keyring.request_digest(&[
            b"credential",
            &merchant.id.to_be_bytes(),
            credentials.login.as_bytes(),
            credentials.password.expose().as_bytes(),
            hash.as_bytes(),
        ]);
        let key = (merchant.id, credentials.login.clone());
        {
            let map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, known)) = map.get(&key) {
                if at.elapsed() < self.credential_ttl && *known == digest {
                    return Ok(merchant);
                }
            }
        }
        let password = credentials.password.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(password.expose(), &hash))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(Fault::AuthenticationFailed.into());
        }
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), digest));
        Ok(merchant)
    }
}

/// argon2 verification of a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// argon2id PHC string of a new password (admin CLI).
pub fn hash_password(password: &str) -> Result<String, EngineError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| EngineError::Fault(Fault::Internal))
}
