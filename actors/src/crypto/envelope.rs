//! Envelope encryption of the key file: the data keys and the fingerprint key are stored wrapped
//! by a key-encryption key (KEK) that is supplied separately (a secret file or an environment
//! variable), so the key file alone — in a backup, beside the database volume — yields nothing.
//!
//! Owns: the [`KeyEncryptionKey`] trait (wrap/unwrap one named key; a KMS client can implement
//! it later), the shipped local implementation [`LocalKek`] (AES-256-GCM under a 32-byte KEK), and
//! the permission check every secret file passes ([`check_private_file`]).
//!
//! Invariants kept:
//! - A wrapped entry is `nonce (12) ‖ ciphertext (32) ‖ tag (16)`, sealed with a fresh random
//!   nonce and the associated data `b"oneclick/kek/v1/" ‖ entry name` (`fingerprint`,
//!   `key.<version>`): an entry copied to another name (say the fingerprint key passed off as data
//!   key 1) fails to unwrap.
//! - A wrong KEK, an altered entry or a renamed entry fails with [`CryptoError::Unwrap`], which
//!   names the entry only — never key material.
//! - A key file or KEK file readable or writable by group or others is refused (an error, not a
//!   warning): on a shared host that file is the whole vault.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::Generate;
use zeroize::Zeroizing;

use super::{gcm_decrypt, gcm_encrypt, CryptoError, MasterKey, KEY_LEN, NONCE_LEN, TAG_LEN};

/// Domain prefix of the associated data of a wrapped key-file entry.
const WRAP_DOMAIN: &[u8] = b"oneclick/kek/v1/";

/// Length of one wrapped key: nonce, the 32-byte key, tag.
pub const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Wraps and unwraps the keys of a key file. `entry` names the key-file entry (`fingerprint`,
/// `key.<version>`) and must be bound to the wrapped bytes, so entries cannot be swapped.
///
/// The local KEK ([`LocalKek`]) is the implementation shipped; a KMS (AWS KMS `Encrypt` with an
/// encryption context, Vault transit with a context) fits the same two calls.
pub trait KeyEncryptionKey: Send + Sync {
    /// Wraps `key` for entry `entry`.
    fn wrap(&self, entry: &str, key: &MasterKey) -> Result<Vec<u8>, CryptoError>;
    /// Unwraps what [`KeyEncryptionKey::wrap`] gave for the same entry.
    fn unwrap(&self, entry: &str, wrapped: &[u8]) -> Result<MasterKey, CryptoError>;
}

/// A 32-byte AES-256-GCM key-encryption key held in memory. Zeroized on drop (through
/// [`MasterKey`]); `Debug` is redacted.
#[derive(Clone)]
pub struct LocalKek(MasterKey);

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalKek([REDACTED])")
    }
}

impl LocalKek {
    pub fn new(key: MasterKey) -> LocalKek {
        LocalKek(key)
    }

    /// A fresh KEK from the operating system's CSPRNG.
    pub fn generate() -> LocalKek {
        LocalKek(MasterKey::generate())
    }

    /// Standard base64 of 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(encoded: &str) -> Result<LocalKek, CryptoError> {
        MasterKey::from_base64(encoded)
            .map(LocalKek)
            .map_err(|_| CryptoError::KeyFile("the KEK is not base64 of 32 bytes".into()))
    }

    /// The text of a KEK file: a comment line and the base64 key. Zeroizes on drop.
    pub fn file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# oneclick key-encryption key (KEK): keep it apart from the key file and the \
             database, mode 0600\n{}\n",
            self.0.to_base64().as_str()
        ))
    }

    /// Reads a KEK file (one base64 line; `#` comment lines and blank lines ignored), refusing a
    /// file group or others may read ([`check_private_file`]).
    pub fn load_file(path: impl AsRef<Path>) -> Result<LocalKek, CryptoError> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CryptoError::KeyFile(format!(
                "cannot read KEK file {}: {}",
                path.display(),
                e.kind()
            ))
        })?);
        check_private_file(path)?;
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match (lines.next(), lines.next()) {
            (Some(line), None) => LocalKek::from_base64(line).map_err(|_| {
                CryptoError::KeyFile(format!(
                    "KEK file {}: expected one line of base64 of 32 bytes",
                    path.display()
                ))
            }),
            _ => Err(CryptoError::KeyFile(format!(
                "KEK file {}: expected one line of base64 of 32 bytes",
                path.display()
            ))),
        }
    }
}

impl KeyEncryptionKey for LocalKek {
    fn wrap(&self, entry: &str, key: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        let nonce = <[u8; NONCE_LEN]>::try_generate().map_err(|_| CryptoError::Encrypt)?;
        let ciphertext = gcm_encrypt(&self.0, &nonce, key.as_bytes(), &wrap_aad(entry))?;
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ciphertext);
        Ok(wrapped)
    }

    fn unwrap(&self, entry: &str, wrapped: &[u8]) -> Result<MasterKey, CryptoError> {
        let fail = || CryptoError::Unwrap(entry.to_string());
        if wrapped.len() != WRAPPED_LEN {
            return Err(fail());
        }
        let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail())?;
        let plain =
            gcm_decrypt(&self.0, nonce, ciphertext, &wrap_aad(entry)).map_err(|_| fail())?;
        let bytes: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| fail())?;
        Ok(MasterKey::from_bytes(bytes))
    }
}

fn wrap_aad(entry: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_DOMAIN.len() + entry.len());
    aad.extend_from_slice(WRAP_DOMAIN);
    aad.extend_from_slice(entry.as_bytes());
    aad
}

/// Refuses a secret file (key file, KEK file) that group or others may read, write or execute:
/// `chmod 600` it. An error, not a warning: a warning scrolls by, a refused start is fixed.
#[cfg(unix)]
pub fn check_private_file(path: &Path) -> Result<(), CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        CryptoError::KeyFile(format!("cannot stat {}: {}", path.display(), e.kind()))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::KeyFile(format!(
            "{} has mode {mode:04o}: group or others may access it; chmod 600 it (or 400)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_private_file(_path: &Path) -> Result<(), CryptoError> {
    Ok(())
}
