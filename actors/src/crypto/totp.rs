//! The personal account's one-time codes (issue 15; docs/account.md): RFC 6238 TOTP as
//! authenticator apps make them by default — HMAC-SHA-1, 6 digits, 30-second steps — computed by
//! the `totp-rs` crate, never by hand.
//!
//! Owns: [`TotpSecret`] (the 160-bit shared secret of RFC 4226 §4), its generation from the
//! operating system's CSPRNG, its `otpauth://` URI (what `oneclick admin account-user --totp`
//! prints once for the user's app), its sealing under the keyring bound to its user
//! ([`totp_aad`]), and [`matching_step`]: which time step a code belongs to, the current step ±1
//! (clock skew).
//!
//! Invariants kept:
//! - The secret zeroizes on drop and never prints (`Debug` is redacted, no `Display`); it leaves
//!   this module only sealed, or inside the URI handed to the operator (a [`Zeroizing`] string).
//! - A sealed secret opens only for the (merchant, login) it was sealed for and under the key
//!   version stored with it ([`totp_aad`], plus the keyring's own version binding).
//! - A code is accepted once: [`matching_step`] only says which step a code is; the vault
//!   accepts a step only if it is later than the last accepted one, with a compare-and-set
//!   (`vault::accounts::accept_totp_code`).

use std::fmt;

use aes_gcm::aead::Generate;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{CryptoError, Keyring, Sealed};

/// Length of a secret in bytes (160 bits, RFC 4226 §4's recommendation for HMAC-SHA-1).
pub const SECRET_LEN: usize = 20;
/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Length of a time step in seconds.
pub const STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one (RFC 6238 §5.2 recommends one).
pub const SKEW_STEPS: u16 = 1;
/// The issuer the authenticator app shows.
pub const ISSUER: &str = "oneclick";

/// A TOTP shared secret. Zeroized on drop; `Debug` prints `TotpSecret([REDACTED])`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TotpSecret([u8; SECRET_LEN]);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

impl TotpSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Result<TotpSecret, CryptoError> {
        <[u8; SECRET_LEN]>::try_generate()
            .map(TotpSecret)
            .map_err(|_| CryptoError::Encrypt)
    }

    /// A secret of known bytes (tests).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> TotpSecret {
        TotpSecret(bytes)
    }

    /// The secret's bytes (tests check that no database row or log holds them).
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The generator of this secret's codes; `account` is the label the app shows.
    fn totp(&self, account: &str) -> Result<Totp, CryptoError> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_step_duration(STEP_SECS)
            .with_skew(SKEW_STEPS)
            .with_secret(Secret::new_stack(self.0))
            .with_issuer(Some(ISSUER))
            .with_account_name(account)
            .build()
            .map_err(|e| CryptoError::OneTimeCode(e.to_string()))
    }

    /// The `otpauth://totp/…` URI an authenticator app enrols from (it holds the secret: show it
    /// once, never log it). The label is `<login>@<merchant>` (a `:` in a login becomes `_`, as
    /// the URI format reserves it).
    pub fn otpauth_uri(
        &self,
        merchant_id: i64,
        login: &str,
    ) -> Result<Zeroizing<String>, CryptoError> {
        let account = format!("{}@{merchant_id}", login.replace(':', "_"));
        let uri = self
            .totp(&account)?
            .to_url()
            .map_err(|e| CryptoError::OneTimeCode(e.to_string()))?;
        Ok(Zeroizing::new(uri))
    }

    /// Seals the secret under the keyring's current key, bound to its user ([`totp_aad`]).
    pub fn seal(
        &self,
        keyring: &Keyring,
        merchant_id: i64,
        login: &str,
    ) -> Result<Sealed, CryptoError> {
        keyring.seal(&self.0, &totp_aad(merchant_id, login))
    }

    /// Opens a secret sealed by [`TotpSecret::seal`] for the same user; anything else (another
    /// user's row, another key version, a tampered blob) is [`CryptoError::Decrypt`].
    pub fn open(
        keyring: &Keyring,
        key_version: u32,
        blob: &[u8],
        merchant_id: i64,
        login: &str,
    ) -> Result<TotpSecret, CryptoError> {
        let plain = keyring.open(key_version, blob, &totp_aad(merchant_id, login))?;
        let bytes: [u8; SECRET_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(TotpSecret(bytes))
    }

    /// The code of this secret at `unix_secs` (tests and the CLI's self-check).
    pub fn code_at(&self, unix_secs: u64) -> Result<Zeroizing<String>, CryptoError> {
        Ok(Zeroizing::new(
            self.totp("")?.generate(unix_secs).to_string(),
        ))
    }
}

/// Associated data of a personal-account user's sealed TOTP secret:
/// `totp/1/<merchant_id>/<len(login)>:<login>`. The length prefix keeps it unambiguous whatever
/// a login holds; a secret copied to another user's row (or another merchant's) does not open.
pub fn totp_aad(merchant_id: i64, login: &str) -> Vec<u8> {
    format!("totp/1/{merchant_id}/{}:{login}", login.len()).into_bytes()
}

/// The time step (Unix seconds / 30) whose code `code` is, among the step of `unix_secs` and
/// [`SKEW_STEPS`] either side; `None` when it is none of them (or not 6 digits). Accepting a step
/// once is the caller's.
pub fn matching_step(secret: &TotpSecret, code: &str, unix_secs: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secret.totp("").ok()?.check(code, unix_secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn a_keyring() -> Keyring {
        Keyring::new(vec![(1, MasterKey::generate())], 1, MasterKey::generate()).unwrap()
    }

    /// RFC 6238 appendix B, SHA-1 (the 20-byte ASCII secret "12345678901234567890"), last
    /// 6 digits of its 8-digit values.
    #[test]
    fn codes_are_those_of_rfc_6238() {
        let secret = TotpSecret::from_bytes(*b"12345678901234567890");
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(time).unwrap().as_str(), code, "t={time}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbouring_ones_only() {
        let secret = TotpSecret::generate().unwrap();
        let now = 1_800_000_015;
        let step = now / STEP_SECS;
        for (offset, expected) in [
            (-2i64, None),
            (-1, Some(step - 1)),
            (0, Some(step)),
            (1, Some(step + 1)),
            (2, None),
        ] {
            let at = (now as i64 + offset * STEP_SECS as i64) as u64;
            let code = secret.code_at(at).unwrap();
            assert_eq!(
                matching_step(&secret, &code, now),
                expected,
                "offset {offset}"
            );
        }
        assert_eq!(matching_step(&secret, "", now), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_own_user() {
        let keyring = a_keyring();
        let secret = TotpSecret::generate().unwrap();
        let sealed = secret.seal(&keyring, 452739, "anna").unwrap();
        let opened =
            TotpSecret::open(&keyring, sealed.key_version, &sealed.blob, 452739, "anna").unwrap();
        assert_eq!(opened.expose(), secret.expose());
        assert!(!sealed
            .blob
            .windows(SECRET_LEN)
            .any(|w| w == secret.expose()));
        for (merchant, login) in [
            (452739, "bob"),
            (777, "anna"),
            (452739, "anna "),
            (4527, "39/5:anna"),
        ] {
            assert_eq!(
                TotpSecret::open(&keyring, sealed.key_version, &sealed.blob, merchant, login)
                    .unwrap_err(),
                CryptoError::Decrypt,
                "moved to {merchant}/{login}"
            );
        }
        // Relabelled with another key version, or opened by another keyring: refused too.
        let rotated = keyring.with_new_current_key().unwrap();
        assert!(TotpSecret::open(&rotated, 2, &sealed.blob, 452739, "anna").is_err());
        assert!(TotpSecret::open(&a_keyring(), 1, &sealed.blob, 452739, "anna").is_err());
    }

    #[test]
    fn the_uri_is_the_authenticator_apps_default_and_debug_hides_the_secret() {
        let secret = TotpSecret::from_bytes(*b"12345678901234567890");
        let uri = secret.otpauth_uri(452739, "an:na").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/oneclick:an_na%40452739?"),
            "{}",
            *uri
        );
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{}",
            *uri
        );
        assert!(uri.contains("issuer=oneclick"), "{}", *uri);
        let parsed = Totp::from_url(uri.as_str()).unwrap();
        assert_eq!(parsed.generate(59).to_string(), "287082");
        assert_eq!(format!("{secret:?}"), "TotpSecret([REDACTED])");
    }
}
