//! Card encryption under versioned master keys, keyed fingerprints and request digests.
//!
//! Owns: [`MasterKey`] (a 32-byte secret), [`Keyring`] (the versioned AES-256-GCM keys plus the
//! fingerprint key), the key file formats (plaintext and wrapped by a key-encryption key,
//! [`envelope`]) and the byte formats that reach the database ([`Sealed`], associated data);
//! the personal account's TOTP secrets, sealed by this keyring ([`totp`]).
//!
//! Invariants kept:
//! - Key material never comes from the database: a keyring is built from configuration, an
//!   environment variable ([`Keyring::parse_spec`]) or a key file ([`Keyring::load_file_with`]).
//! - Secrets zeroize on drop and never print: `Debug` of [`MasterKey`] and [`Keyring`] is
//!   redacted, and no [`CryptoError`] message carries key material, plaintext or file contents.
//! - Every encryption uses a fresh random 96-bit nonce from the operating system's CSPRNG;
//!   `blob = nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`.
//! - Every ciphertext is bound by its associated data to its key version and to its row:
//!   `aad = b"oneclick/v1/" ‖ key_version (u32, big endian) ‖ caller's aad`. A card is bound to
//!   its owner (customer row and number) and token ([`card_owner_aad`], AAD version 2; rows of
//!   AAD version 1 are bound to the token only, [`card_aad`], and open until re-sealed), an
//!   agreement to its merchant and order number ([`agreement_aad`]), which are its owner. A blob
//!   copied to another row, a row moved to another customer, or a blob relabelled with another
//!   key version fails to open with the opaque [`CryptoError::Decrypt`].
//! - New data is always sealed under the current key; old versions stay readable while their key
//!   is in the keyring, so rotation is online: add key `n+1`, make it current, re-seal rows
//!   ([`Keyring::reseal`]), then drop the old key.
//! - Card numbers are found again by an HMAC-SHA256 fingerprint under a separate fingerprint key
//!   (never an unkeyed hash, which a 16-digit PAN space would let anyone brute-force). The
//!   fingerprint key is not rotated with the encryption keys: rotating it would orphan every
//!   stored fingerprint. It must differ from every encryption key.
//!
//! Key file format ([`Keyring::load_file_with`]), one setting per line, `#` starts a comment
//! line, blank lines ignored, whitespace around `=` optional. A key file must not be accessible
//! to group or others (refused otherwise). Wrapped (what `oneclick admin keys generate` writes):
//! each key is standard base64 of the 60 bytes a key-encryption key wrapped under the entry's
//! name ([`envelope`]); the KEK is supplied separately.
//!
//! ```text
//! format = wrapped-v1
//! current = 2
//! fingerprint = <base64 of 60 bytes>
//! key.1 = <base64 of 60 bytes>
//! key.2 = <base64 of 60 bytes>
//! ```
//!
//! Plaintext (before 2026-12-06; `oneclick admin keys wrap` converts it): no `format` line, keys
//! are standard base64 of 32 bytes.
//!
//! Compact form ([`Keyring::parse_spec`], for environment variables): `1:<base64>,2:<base64>`,
//! entries separated by commas or newlines, `#` comment lines allowed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

mod envelope;
pub mod totp;
pub use envelope::{check_private_file, KeyEncryptionKey, LocalKek, WRAPPED_LEN};

/// Length of a master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of the random nonce that starts every blob.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM authentication tag that ends every blob.
pub const TAG_LEN: usize = 16;

/// Domain prefix of the associated data of every sealed value.
const SEAL_DOMAIN: &[u8] = b"oneclick/v1/";
/// Domain prefix of card-number fingerprints.
const FINGERPRINT_DOMAIN: &[u8] = b"oneclick/fp/v1/";
/// Domain prefix of request digests.
const REQUEST_DOMAIN: &[u8] = b"oneclick/req/v1/";
/// HMAC-SHA256 block size: a shorter key is zero-padded to it (RFC 2104).
const HMAC_BLOCK_LEN: usize = 64;

/// Errors of this layer. Messages never contain key material, plaintext or file contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key was not standard base64 of exactly 32 bytes.
    #[error("invalid master key: expected base64 of exactly 32 bytes")]
    InvalidKey,
    /// A blob names a key version this keyring does not hold.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(u32),
    /// Authentication failed (wrong key, wrong associated data, tampered or truncated blob).
    /// Deliberately without detail.
    #[error("decryption failed")]
    Decrypt,
    /// Encryption failed (the system random generator was unavailable).
    #[error("encryption failed")]
    Encrypt,
    /// The key configuration (a key file or a key spec) is malformed or inconsistent.
    #[error("key configuration: {0}")]
    KeyFile(String),
    /// A wrapped key-file entry did not unwrap under the key-encryption key: the KEK is not the
    /// one the file was wrapped with, or the entry was altered or renamed. Names the entry only.
    #[error("the key-encryption key does not open key-file entry `{0}` (wrong KEK, or the key file was altered)")]
    Unwrap(String),
    /// A wrapped key file was given without a key-encryption key.
    #[error("the key file is wrapped: a key-encryption key is needed (keys.kek_file / ONECLICK__KEYS__KEK_FILE or ONECLICK__KEYS__KEK)")]
    KekMissing,
    /// A one-time-code generator could not be built (`totp-rs`'s reason; never the secret).
    #[error("one-time code: {0}")]
    OneTimeCode(String),
}

/// A 32-byte secret key. Zeroized on drop; `Debug` prints `MasterKey([REDACTED])`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// Parses standard base64 (surrounding whitespace ignored) of exactly 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<MasterKey, CryptoError> {
        let decoded = Zeroizing::new(
            BASE64
                .decode(encoded.trim())
                .map_err(|_| CryptoError::InvalidKey)?,
        );
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidKey)?;
        Ok(MasterKey(bytes))
    }

    /// A fresh key from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Only if the operating system's random generator fails, which a modern OS does not do;
    /// continuing without randomness would be worse.
    pub fn generate() -> MasterKey {
        MasterKey(<[u8; KEY_LEN]>::generate())
    }

    /// Standard base64 of the key, for the key-generation CLI. The string zeroizes on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0))
    }

    /// The raw bytes, for wrapping under a key-encryption key ([`envelope`]).
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Result<Aes256Gcm, CryptoError> {
        Aes256Gcm::new_from_slice(&self.0).map_err(|_| CryptoError::InvalidKey)
    }

    /// HMAC-SHA256 keyed by this key. Zero-padding the 32-byte key to the 64-byte block is
    /// exactly what HMAC does with a short key (RFC 2104), and keeps this constructor infallible.
    fn hmac(&self) -> Hmac<Sha256> {
        let mut block = Zeroizing::new([0u8; HMAC_BLOCK_LEN]);
        block[..KEY_LEN].copy_from_slice(&self.0);
        let mut key = hmac::digest::Key::<Hmac<Sha256>>::from(*block);
        let mac = <Hmac<Sha256> as KeyInit>::new(&key);
        // `Array` has no zeroizing drop here; wipe the copy explicitly.
        key.as_mut_slice().zeroize();
        mac
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// A sealed (encrypted and authenticated) value as stored: the key version it was sealed under
/// and `nonce ‖ ciphertext ‖ tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_version: u32,
    pub blob: Vec<u8>,
}

/// The versioned encryption keys (one current, older ones kept for reading) and the fingerprint
/// key. `Debug` shows versions only.
#[derive(Clone)]
pub struct Keyring {
    /// Version every new seal uses; always a key of `keys`.
    current: u32,
    /// All readable versions, each ≥ 1.
    keys: BTreeMap<u32, MasterKey>,
    /// Keys fingerprints and request digests; never rotated (see the module header).
    fingerprint_key: MasterKey,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("versions", &self.versions())
            .field("keys", &"[REDACTED]")
            .field("fingerprint_key", &"[REDACTED]")
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring. Versions must be ≥ 1 and unique, `current` must be one of them, and the
    /// fingerprint key must differ from every encryption key.
    pub fn new(
        keys: Vec<(u32, MasterKey)>,
        current: u32,
        fingerprint_key: MasterKey,
    ) -> Result<Keyring, CryptoError> {
        let mut map = BTreeMap::new();
        for (version, key) in keys {
            if version == 0 {
                return Err(CryptoError::KeyFile("key versions start at 1".into()));
            }
            if key == fingerprint_key {
                return Err(CryptoError::KeyFile(format!(
                    "key version {version} equals the fingerprint key; use separate keys"
                )));
            }
            if map.insert(version, key).is_some() {
                return Err(CryptoError::KeyFile(format!(
                    "key version {version} is given twice"
                )));
            }
        }
        if !map.contains_key(&current) {
            return Err(CryptoError::UnknownKeyVersion(current));
        }
        Ok(Keyring {
            current,
            keys: map,
            fingerprint_key,
        })
    }

    /// The version new seals use.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Every version this keyring can open, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// Parses the compact form `1:<base64>,2:<base64>` (commas or newlines between entries,
    /// `#` comment lines and blank entries ignored). Versions must be ≥ 1 and unique.
    pub fn parse_spec(spec: &str) -> Result<Vec<(u32, MasterKey)>, CryptoError> {
        let mut keys: Vec<(u32, MasterKey)> = Vec::new();
        for line in spec.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            for entry in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (version, encoded) = entry.split_once(':').ok_or_else(|| {
                    CryptoError::KeyFile("key spec entries look like <version>:<base64>".into())
                })?;
                let version = parse_version(version)?;
                if keys.iter().any(|(v, _)| *v == version) {
                    return Err(CryptoError::KeyFile(format!(
                        "key version {version} is given twice"
                    )));
                }
                let key = MasterKey::from_base64(encoded).map_err(|_| {
                    CryptoError::KeyFile(format!("key version {version} is not base64 of 32 bytes"))
                })?;
                keys.push((version, key));
            }
        }
        Ok(keys)
    }

    /// Reads a plaintext key file (format in the module header). Refuses a file group or
    /// others may access ([`check_private_file`]) and a wrapped file (it needs a KEK:
    /// [`Keyring::load_file_with`]).
    pub fn load_file(path: impl AsRef<Path>) -> Result<Keyring, CryptoError> {
        Keyring::load_file_with(path, None)
    }

    /// Reads a key file, plaintext or wrapped (format in the module header); a wrapped file is
    /// unwrapped by `kek`. Refuses a file group or others may access ([`check_private_file`]).
    pub fn load_file_with(
        path: impl AsRef<Path>,
        kek: Option<&dyn KeyEncryptionKey>,
    ) -> Result<Keyring, CryptoError> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CryptoError::KeyFile(format!("cannot read {}: {}", path.display(), e.kind()))
        })?);
        check_private_file(path)?;
        match (key_file_format(&text)?, kek) {
            (KeyFileFormat::Plain, _) => Keyring::parse_file(&text),
            (KeyFileFormat::Wrapped, Some(kek)) => Keyring::parse_wrapped_file(&text, kek),
            (KeyFileFormat::Wrapped, None) => Err(CryptoError::KekMissing),
        }
    }

    /// Parses the contents of a plaintext key file (format in the module header).
    pub fn parse_file(text: &str) -> Result<Keyring, CryptoError> {
        if key_file_format(text)? == KeyFileFormat::Wrapped {
            return Err(CryptoError::KekMissing);
        }
        parse_key_file(text, |_, value| MasterKey::from_base64(value))
    }

    /// Parses the contents of a wrapped key file: every key is base64 of what `kek` wrapped
    /// under the entry's name.
    pub fn parse_wrapped_file(
        text: &str,
        kek: &dyn KeyEncryptionKey,
    ) -> Result<Keyring, CryptoError> {
        if key_file_format(text)? != KeyFileFormat::Wrapped {
            return Err(CryptoError::KeyFile(
                "expected a wrapped key file (`format = wrapped-v1`)".into(),
            ));
        }
        parse_key_file(text, |entry, value| {
            let wrapped = Zeroizing::new(
                BASE64
                    .decode(value.trim())
                    .map_err(|_| CryptoError::Unwrap(entry.to_string()))?,
            );
            kek.unwrap(entry, &wrapped)
        })
    }

    /// This keyring as a wrapped key file (every key wrapped by `kek` under its entry name).
    pub fn to_wrapped_file_text(
        &self,
        kek: &dyn KeyEncryptionKey,
    ) -> Result<Zeroizing<String>, CryptoError> {
        let mut out = Zeroizing::new(String::from(
            "# oneclick master keys, wrapped by a key-encryption key (KEK) kept elsewhere.\n\
             # Keep this file mode 0600 and never beside the KEK.\n",
        ));
        out.push_str(&format!(
            "format = {WRAPPED_FORMAT}\ncurrent = {}\n",
            self.current
        ));
        let mut line = |entry: &str, key: &MasterKey| -> Result<(), CryptoError> {
            let wrapped = kek.wrap(entry, key)?;
            out.push_str(&format!("{entry} = {}\n", BASE64.encode(wrapped)));
            Ok(())
        };
        line("fingerprint", &self.fingerprint_key)?;
        for (version, key) in &self.keys {
            line(&format!("key.{version}"), key)?;
        }
        Ok(out)
    }

    /// This keyring with key `max + 1` added and made current (rotation step 1).
    pub fn with_new_current_key(&self) -> Result<Keyring, CryptoError> {
        let next = self.keys.keys().copied().max().unwrap_or(0) + 1;
        let mut keys: Vec<(u32, MasterKey)> =
            self.keys.iter().map(|(v, k)| (*v, k.clone())).collect();
        keys.push((next, MasterKey::generate()));
        Keyring::new(keys, next, self.fingerprint_key.clone())
    }

    /// Encrypts `plaintext` under the current key, bound to `aad` (see the module header).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let nonce = <[u8; NONCE_LEN]>::try_generate().map_err(|_| CryptoError::Encrypt)?;
        self.seal_with_nonce(&nonce, plaintext, aad)
    }

    /// [`Keyring::seal`] with a given nonce. Private: a caller-chosen nonce is how GCM breaks.
    fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Sealed, CryptoError> {
        let key = self
            .keys
            .get(&self.current)
            .ok_or(CryptoError::UnknownKeyVersion(self.current))?;
        let full_aad = bound_aad(self.current, aad);
        let ciphertext = gcm_encrypt(key, nonce, plaintext, &full_aad)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_version: self.current,
            blob,
        })
    }

    /// Decrypts a blob sealed under `key_version` with the same `aad`.
    pub fn open(
        &self,
        key_version: u32,
        blob: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self
            .keys
            .get(&key_version)
            .ok_or(CryptoError::UnknownKeyVersion(key_version))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
        gcm_decrypt(key, nonce, ciphertext, &bound_aad(key_version, aad))
    }

    /// Whether a value sealed under `key_version` should be re-sealed under the current key.
    pub fn needs_reseal(&self, key_version: u32) -> bool {
        key_version != self.current
    }

    /// Opens a value and seals it again under the current key with the same `aad` (rotation).
    pub fn reseal(&self, key_version: u32, blob: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let plaintext = self.open(key_version, blob, aad)?;
        self.seal(&plaintext, aad)
    }

    /// Keyed fingerprint of a card number's digits: finds the same number again (R11) without
    /// decrypting every card, and without an unkeyed hash anyone could brute-force.
    pub fn fingerprint(&self, pan_digits: &[u8]) -> [u8; 32] {
        let mut mac = self.fingerprint_key.hmac();
        mac.update(FINGERPRINT_DOMAIN);
        mac.update(pan_digits);
        mac.finalize().into_bytes().into()
    }

    /// Keyed digest of a command's significant parts, for idempotency comparison. Each part is
    /// length-prefixed (u64, big endian), so `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn request_digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.fingerprint_key.hmac();
        mac.update(REQUEST_DOMAIN);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Version of a card's associated data (column `cards.aad_version`): 1 binds the ciphertext to
/// its token only ([`card_aad`], rows written before 2026-12-06 and by tools seeding that way),
/// 2 to its owner as well ([`card_owner_aad`]).
pub const CARD_AAD_TOKEN: i32 = 1;
/// See [`CARD_AAD_TOKEN`]; every new card is sealed with this version.
pub const CARD_AAD_OWNER: i32 = 2;

/// Associated data of a stored card at `aad_version` ([`CARD_AAD_TOKEN`], [`CARD_AAD_OWNER`]).
/// An unknown version is [`CryptoError::Decrypt`]: the row cannot be opened.
pub fn card_aad_for(
    aad_version: i32,
    customer_id: i64,
    customer_number: &str,
    token: &str,
) -> Result<Vec<u8>, CryptoError> {
    match aad_version {
        CARD_AAD_TOKEN => Ok(card_aad(token)),
        CARD_AAD_OWNER => Ok(card_owner_aad(customer_id, customer_number, token)),
        _ => Err(CryptoError::Decrypt),
    }
}

/// Associated data of a stored card bound to its owner — the customer row (its id) and the
/// customer number it answers to — and to its token:
/// `card/2/<customer_id>/<len(customer_number)>:<customer_number>/<token>`. The length prefix
/// keeps it unambiguous whatever a customer number holds. A row moved to another customer (its
/// `customer_id` changed) or a customer row renamed to another number no longer opens.
///
/// The union is not part of it: joining a union (`oneclick admin union join`) moves customers
/// with their cards to another union legitimately, keeping their ids and numbers.
pub fn card_owner_aad(customer_id: i64, customer_number: &str, token: &str) -> Vec<u8> {
    format!(
        "card/2/{customer_id}/{}:{customer_number}/{token}",
        customer_number.len()
    )
    .into_bytes()
}

/// Associated data of a stored card, bound to its token only (AAD version 1, see
/// [`CARD_AAD_TOKEN`]): still opened, never written by the service any more.
pub fn card_aad(token: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(5 + token.len());
    aad.extend_from_slice(b"card:");
    aad.extend_from_slice(token.as_bytes());
    aad
}

/// Associated data of an agreement's stored card data, bound to its merchant and order number
/// (`agreement:<merchant_id>:<order_number>`; the merchant id has no `:`, so this is unambiguous).
pub fn agreement_aad(merchant_id: i64, order_number: &str) -> Vec<u8> {
    format!("agreement:{merchant_id}:{order_number}").into_bytes()
}

/// The `format` line of a wrapped key file.
const WRAPPED_FORMAT: &str = "wrapped-v1";

/// Whether a key file holds its keys in plain base64 or wrapped by a KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileFormat {
    /// No `format` line: today's plaintext file.
    Plain,
    /// `format = wrapped-v1`.
    Wrapped,
}

/// The format a key file's `format` line names (none: plaintext).
pub fn key_file_format(text: &str) -> Result<KeyFileFormat, CryptoError> {
    for line in text.lines().map(str::trim) {
        if let Some((name, value)) = line.split_once('=') {
            if name.trim() == "format" {
                return match value.trim() {
                    WRAPPED_FORMAT => Ok(KeyFileFormat::Wrapped),
                    _ => Err(CryptoError::KeyFile(format!(
                        "unknown key file format (expected `format = {WRAPPED_FORMAT}` or none)"
                    ))),
                };
            }
        }
    }
    Ok(KeyFileFormat::Plain)
}

/// Parses a key file's lines; `decode(entry, value)` turns each key's value into a key.
fn parse_key_file(
    text: &str,
    decode: impl Fn(&str, &str) -> Result<MasterKey, CryptoError>,
) -> Result<Keyring, CryptoError> {
    let mut current = None;
    let mut fingerprint = None;
    let mut keys: Vec<(u32, MasterKey)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| {
            CryptoError::KeyFile(format!("line {number}: expected `name = value`"))
        })?;
        let (name, value) = (name.trim(), value.trim());
        // A wrong KEK names its entry; a malformed plaintext key names its line.
        let decode = |entry: &str| {
            decode(entry, value).map_err(|e| match e {
                CryptoError::Unwrap(_) => e,
                _ => CryptoError::KeyFile(format!("line {number}: not base64 of 32 bytes")),
            })
        };
        match name {
            "format" => {}
            "current" => {
                if current.replace(parse_version(value)?).is_some() {
                    return Err(CryptoError::KeyFile(format!(
                        "line {number}: `current` is given twice"
                    )));
                }
            }
            "fingerprint" => {
                if fingerprint.replace(decode(name)?).is_some() {
                    return Err(CryptoError::KeyFile(format!(
                        "line {number}: `fingerprint` is given twice"
                    )));
                }
            }
            _ => {
                let version = name
                    .strip_prefix("key.")
                    .ok_or_else(|| {
                        CryptoError::KeyFile(format!(
                            "line {number}: unknown setting (expected format, current, \
                             fingerprint or key.<version>)"
                        ))
                    })
                    .and_then(parse_version)?;
                if keys.iter().any(|(v, _)| *v == version) {
                    return Err(CryptoError::KeyFile(format!(
                        "line {number}: key version {version} is given twice"
                    )));
                }
                // The canonical entry name, so `key.01` cannot stand in for `key.1`.
                keys.push((version, decode(&format!("key.{version}"))?));
            }
        }
    }
    let fingerprint =
        fingerprint.ok_or_else(|| CryptoError::KeyFile("missing `fingerprint`".into()))?;
    let current = match current {
        Some(current) => current,
        // A single key is unambiguous; with several, the operator must say which is current.
        None if keys.len() == 1 => keys[0].0,
        None => return Err(CryptoError::KeyFile("missing `current`".into())),
    };
    if keys.is_empty() {
        return Err(CryptoError::KeyFile("no `key.<version>` lines".into()));
    }
    Keyring::new(keys, current, fingerprint)
}

fn parse_version(raw: &str) -> Result<u32, CryptoError> {
    match raw.trim().parse::<u32>() {
        Ok(version) if version >= 1 => Ok(version),
        _ => Err(CryptoError::KeyFile(
            "key versions are integers from 1".into(),
        )),
    }
}

/// `SEAL_DOMAIN ‖ key_version (BE) ‖ aad`.
fn bound_aad(key_version: u32, aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(SEAL_DOMAIN.len() + 4 + aad.len());
    full.extend_from_slice(SEAL_DOMAIN);
    full.extend_from_slice(&key_version.to_be_bytes());
    full.extend_from_slice(aad);
    full
}

/// Plain AES-256-GCM: `ciphertext ‖ tag`.
fn gcm_encrypt(
    key: &MasterKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(*nonce);
    key.cipher()?
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)
}

/// Plain AES-256-GCM decryption of `ciphertext ‖ tag`.
fn gcm_decrypt(
    key: &MasterKey,
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(*nonce);
    key.cipher()?
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests;
