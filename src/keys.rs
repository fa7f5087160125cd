//! Master keys from configuration: a key file (`keys.file`) or environment values
//! (`keys.master_keys` = `1:BASE64,2:BASE64`, `keys.current`, `keys.fingerprint_key`). Never from
//! the database. Also writes fresh key files and adds a rotation key to an existing one.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use oneclick_actors::crypto::{Keyring, MasterKey};

use crate::config::KeysSettings;

pub fn load(keys: &KeysSettings) -> anyhow::Result<Keyring> {
    if let Some(file) = &keys.file {
        return Keyring::load_file(file)
            .with_context(|| format!("keys.file {}", Path::new(file).display()));
    }
    let (Some(spec), Some(fingerprint)) = (&keys.master_keys, &keys.fingerprint_key) else {
        bail!(
            "keys: no key material; set keys.file (ONECLICK__KEYS__FILE) or keys.master_keys and \
             keys.fingerprint_key (ONECLICK__KEYS__MASTER_KEYS, ONECLICK__KEYS__FINGERPRINT_KEY); \
             `oneclick admin keys generate --out FILE` makes a key file"
        )
    };
    let list = Keyring::parse_spec(spec.expose()).context("keys.master_keys")?;
    let current = keys
        .current
        .or_else(|| list.iter().map(|(v, _)| *v).max())
        .context("keys.master_keys: empty")?;
    let fingerprint =
        MasterKey::from_base64(fingerprint.expose()).context("keys.fingerprint_key")?;
    Keyring::new(list, current, fingerprint).context("keys")
}

/// The text of a fresh key file: key 1 current, a separate fingerprint key.
pub fn generate_file_text() -> String {
    format!(
        "# oneclick master keys: keep this file mode 0600, never commit it\ncurrent = 1\nfingerprint = {}\nkey.1 = {}\n",
        MasterKey::generate().to_base64().as_str(),
        MasterKey::generate().to_base64().as_str()
    )
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

/// Adds key `n+1` to a key file and makes it current (rotation step 1); returns the new version.
pub fn add_rotation_key(path: &Path) -> anyhow::Result<u32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let keyring = Keyring::parse_file(&text).with_context(|| format!("{}", path.display()))?;
    let next = keyring.versions().into_iter().max().unwrap_or(0) + 1;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("current") {
            out.push_str(&format!("current = {next}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "key.{next} = {}\n",
        MasterKey::generate().to_base64().as_str()
    ));
    let tmp = path.with_extension("rotating");
    let _ = std::fs::remove_file(&tmp);
    write_new_file(&tmp, &out)?;
    std::fs::rename(&tmp, path)?;
    Ok(next)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn generated_file_loads_and_rotation_adds_a_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        write_new_file(&path, &generate_file_text()).unwrap();
        let first = Keyring::load_file(&path).unwrap();
        assert_eq!(first.current_version(), 1);
        assert_eq!(add_rotation_key(&path).unwrap(), 2);
        let second = Keyring::load_file(&path).unwrap();
        assert_eq!(second.current_version(), 2);
        assert_eq!(second.versions(), vec![1, 2]);
        assert!(
            write_new_file(&path, "x").is_err(),
            "never overwrites a key file"
        );
    }
}
