//! Master keys from configuration — never from the database — and the key files the admin CLI
//! writes.
//!
//! Key hierarchy (docs/security/keys.md): a key-encryption key (KEK: `keys.kek_file` or the
//! `ONECLICK__KEYS__KEK` environment variable) wraps the data keys and the fingerprint key held
//! in the key file (`keys.file`, `format = wrapped-v1`). The KEK is behind
//! [`KeyEncryptionKey`], so a KMS can replace the local KEK without touching the key file's
//! readers.
//!
//! Invariants kept:
//! - Plaintext key material (a key file without `format`, or `keys.master_keys` with
//!   `keys.fingerprint_key`) loads only with `keys.allow_plaintext = true`. Kept for development
//!   and for the upgrade window (`oneclick admin keys wrap` converts a plaintext file); refused
//!   by default, so a deployment cannot fall back to it unnoticed.
//! - A key file or KEK file group or others may access is refused (an error, at start).
//! - Files are written mode 0600, never over an existing file; a rewrite (rotation) goes through
//!   a temporary file and a rename, so a crash leaves the old or the new file, never half.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use oneclick_actors::crypto::{
    key_file_format, KeyEncryptionKey, KeyFileFormat, Keyring, LocalKek, MasterKey,
};
use zeroize::Zeroizing;

use crate::config::KeysSettings;

/// The keyring the configuration names (see the module header for what is refused).
pub fn load(keys: &KeysSettings) -> anyhow::Result<Keyring> {
    if let Some(file) = &keys.file {
        return load_file(file, keys);
    }
    let (Some(spec), Some(fingerprint)) = (&keys.master_keys, &keys.fingerprint_key) else {
        bail!(
            "keys: no key material; set keys.file (ONECLICK__KEYS__FILE) and the key-encryption \
             key (ONECLICK__KEYS__KEK_FILE); `oneclick admin keys generate --out FILE --kek-file \
             KEK --new-kek` makes both"
        )
    };
    if !keys.allow_plaintext {
        bail!(
            "keys.master_keys holds plaintext keys: refused unless keys.allow_plaintext = true \
             (development only); deploy a wrapped key file (keys.file + keys.kek_file)"
        );
    }
    let list = Keyring::parse_spec(spec.expose()).context("keys.master_keys")?;
    let current = keys
        .current
        .or_else(|| list.iter().map(|(v, _)| *v).max())
        .context("keys.master_keys: empty")?;
    let fingerprint =
        MasterKey::from_base64(fingerprint.expose()).context("keys.fingerprint_key")?;
    Keyring::new(list, current, fingerprint).context("keys")
}

/// The configured KEK, if any: `keys.kek` (environment) or `keys.kek_file`.
pub fn kek(keys: &KeysSettings) -> anyhow::Result<Option<LocalKek>> {
    if let Some(kek) = &keys.kek {
        return Ok(Some(
            LocalKek::from_base64(kek.expose()).context("keys.kek (ONECLICK__KEYS__KEK)")?,
        ));
    }
    match &keys.kek_file {
        Some(path) => Ok(Some(
            LocalKek::load_file(path).context("keys.kek_file (ONECLICK__KEYS__KEK_FILE)")?,
        )),
        None => Ok(None),
    }
}

/// Loads the key file at `path`, wrapped (with the configured KEK) or plaintext (only when
/// allowed).
pub fn load_file(path: &Path, keys: &KeysSettings) -> anyhow::Result<Keyring> {
    let context = || format!("keys.file {}", path.display());
    let format = {
        let text = Zeroizing::new(std::fs::read_to_string(path).with_context(context)?);
        key_file_format(&text).with_context(context)?
    };
    match format {
        KeyFileFormat::Wrapped => {
            let kek = kek(keys)?.with_context(|| {
                format!(
                    "keys.file {} is wrapped: set the key-encryption key (keys.kek_file / \
                     ONECLICK__KEYS__KEK_FILE, or ONECLICK__KEYS__KEK)",
                    path.display()
                )
            })?;
            Keyring::load_file_with(path, Some(&kek)).with_context(context)
        }
        KeyFileFormat::Plain if keys.allow_plaintext => {
            Keyring::load_file(path).with_context(context)
        }
        KeyFileFormat::Plain => bail!(
            "keys.file {} holds plaintext keys: refused unless keys.allow_plaintext = true \
             (development only); wrap it: `oneclick admin keys wrap --kek-file KEK --in {} --out \
             NEW` (docs/security/keys.md)",
            path.display(),
            path.display()
        ),
    }
}

/// A fresh keyring: key 1 current, a separate fingerprint key.
pub fn generate_keyring() -> anyhow::Result<Keyring> {
    Ok(Keyring::new(
        vec![(1, MasterKey::generate())],
        1,
        MasterKey::generate(),
    )?)
}

/// The text of a fresh plaintext key file (development, `keys.allow_plaintext`).
pub fn generate_plaintext_file_text() -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# oneclick master keys (PLAINTEXT: development only): keep this file mode 0600, never commit it\ncurrent = 1\nfingerprint = {}\nkey.1 = {}\n",
        MasterKey::generate().to_base64().as_str(),
        MasterKey::generate().to_base64().as_str()
    ))
}

/// Writes `text` to `path` with mode 0600, refusing to overwrite.
pub fn write_new_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Replaces `path` by `text` (mode 0600) through a temporary file and a rename.
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("rotating");
    let _ = std::fs::remove_file(&tmp);
    write_new_file(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Converts a plaintext key file to a wrapped one under `kek` (upgrade in place). The input is
/// read and checked as the service would read it; the output is new (never overwritten) and is
/// read back before this returns, so a file that would not load is never left behind.
pub fn wrap_file(kek: &dyn KeyEncryptionKey, input: &Path, output: &Path) -> anyhow::Result<u32> {
    let keyring = Keyring::load_file(input).with_context(|| format!("{}", input.display()))?;
    let text = keyring.to_wrapped_file_text(kek)?;
    write_new_file(output, &text)?;
    let back = Keyring::load_file_with(output, Some(kek))
        .with_context(|| format!("reading back {}", output.display()))?;
    if back.versions() != keyring.versions() || back.current_version() != keyring.current_version()
    {
        bail!(
            "{} does not read back as {}",
            output.display(),
            input.display()
        );
    }
    Ok(keyring.current_version())
}

/// Adds key `n+1` to a key file and makes it current (rotation step 1); returns the new version.
/// A wrapped file stays wrapped (under the configured KEK); a plaintext file stays plaintext.
pub fn add_rotation_key(path: &Path, keys: &KeysSettings) -> anyhow::Result<u32> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    match key_file_format(&text)? {
        KeyFileFormat::Wrapped => {
            let kek = kek(keys)?.with_context(|| {
                format!(
                    "{} is wrapped: set the key-encryption key (keys.kek_file / \
                     ONECLICK__KEYS__KEK_FILE, or ONECLICK__KEYS__KEK)",
                    path.display()
                )
            })?;
            let keyring = Keyring::load_file_with(path, Some(&kek))
                .with_context(|| format!("{}", path.display()))?;
            let rotated = keyring.with_new_current_key()?;
            replace_file(path, &rotated.to_wrapped_file_text(&kek)?)?;
            Ok(rotated.current_version())
        }
        KeyFileFormat::Plain => {
            let keyring =
                Keyring::load_file(path).with_context(|| format!("{}", path.display()))?;
            let next = keyring.versions().into_iter().max().unwrap_or(0) + 1;
            let mut out = Zeroizing::new(String::new());
            for line in text.lines() {
                if line.trim_start().starts_with("current") {
                    out.push_str(&format!("current = {next}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            if !text.lines().any(|l| l.trim_start().starts_with("current")) {
                out.push_str(&format!("current = {next}\n"));
            }
            out.push_str(&format!(
                "key.{next} = {}\n",
                MasterKey::generate().to_base64().as_str()
            ));
            replace_file(path, &out)?;
            Ok(next)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn settings_with_kek(kek_file: &Path) -> KeysSettings {
        KeysSettings {
            kek_file: Some(kek_file.to_path_buf()),
            ..KeysSettings::default()
        }
    }

    #[test]
    fn generated_plaintext_file_loads_only_when_allowed_and_rotation_adds_a_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        write_new_file(&path, &generate_plaintext_file_text()).unwrap();
        let mut keys = KeysSettings {
            file: Some(path.clone()),
            ..KeysSettings::default()
        };
        assert!(load(&keys).is_err(), "plaintext refused by default");
        keys.allow_plaintext = true;
        assert_eq!(load(&keys).unwrap().current_version(), 1);
        assert_eq!(add_rotation_key(&path, &keys).unwrap(), 2);
        let second = load(&keys).unwrap();
        assert_eq!(second.current_version(), 2);
        assert_eq!(second.versions(), vec![1, 2]);
        assert!(
            write_new_file(&path, "x").is_err(),
            "never overwrites a key file"
        );
    }

    #[test]
    fn a_wrapped_file_rotates_and_stays_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, kek_path) = (dir.path().join("keys"), dir.path().join("kek"));
        let kek = LocalKek::generate();
        write_new_file(&kek_path, &kek.file_text()).unwrap();
        let keyring = generate_keyring().unwrap();
        write_new_file(&path, &keyring.to_wrapped_file_text(&kek).unwrap()).unwrap();
        let mut keys = settings_with_kek(&kek_path);
        keys.file = Some(path.clone());
        assert_eq!(load(&keys).unwrap().current_version(), 1);
        assert_eq!(add_rotation_key(&path, &keys).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(key_file_format(&text).unwrap(), KeyFileFormat::Wrapped);
        let rotated = load(&keys).unwrap();
        assert_eq!(rotated.versions(), vec![1, 2]);
        // The old key is still the old key: a value sealed before opens after.
        let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
        assert_eq!(
            rotated.open(1, &sealed.blob, b"row").unwrap().as_slice(),
            b"4111111111111111"
        );
        keys.kek_file = None;
        let err = format!("{:#}", load(&keys).unwrap_err());
        assert!(err.contains("is wrapped"), "{err}");
    }
}
