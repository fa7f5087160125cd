//! Tests of [`super`]: known answers, binding of ciphertexts to rows, owners and versions,
//! rotation, nonce uniqueness, fingerprints, redaction, and the wrapped key file (envelope).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashSet;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key_of(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; KEY_LEN])
}

fn counting_key() -> MasterKey {
    let mut bytes = [0u8; KEY_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    MasterKey::from_bytes(bytes)
}

fn ring(versions: &[(u32, u8)], current: u32) -> Keyring {
    let keys = versions.iter().map(|&(v, b)| (v, key_of(b))).collect();
    Keyring::new(keys, current, key_of(0xF0)).unwrap()
}

// --- known answers -------------------------------------------------------------------------

/// NIST CAVP `gcmEncryptExtIV256.rsp` (96-bit IV, 128-bit plaintext, AAD and tag), as also used
/// by the aes-gcm crate's own `tests/aes256gcm.rs`.
#[test]
fn aes_256_gcm_matches_nist_cavp_vector() {
    let key = MasterKey::from_bytes(
        hex("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b")
            .try_into()
            .unwrap(),
    );
    let nonce: [u8; NONCE_LEN] = hex("ac93a1a6145299bde902f21a").try_into().unwrap();
    let plaintext = hex("2d71bcfa914e4ac045b2aa60955fad24");
    let aad = hex("1e0889016f67601c8ebea4943bc23ad6");
    let expected = hex("8995ae2e6df3dbf96fac7b7137bae67feca5aa77d51d4a0a14d9c51e1da474ab");

    let sealed = gcm_encrypt(&key, &nonce, &plaintext, &aad).unwrap();
    assert_eq!(sealed, expected);
    let opened = gcm_decrypt(&key, &nonce, &expected, &aad).unwrap();
    assert_eq!(opened.as_slice(), plaintext.as_slice());
}

/// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14 (AES-256, zero key,
/// zero IV, one zero block).
#[test]
fn aes_256_gcm_matches_gcm_spec_test_case_14() {
    let expected = hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
    let sealed = gcm_encrypt(&key_of(0), &[0; NONCE_LEN], &[0; 16], b"").unwrap();
    assert_eq!(sealed, expected);
}

/// The stored format (`nonce ‖ ct ‖ tag`, aad = domain ‖ version BE ‖ caller aad) is a
/// persistence contract. Expected value computed independently with Python `cryptography`'s
/// AESGCM over the same inputs.
#[test]
fn sealed_format_matches_independent_implementation() {
    let keyring = Keyring::new(vec![(1, counting_key())], 1, key_of(0xF0)).unwrap();
    let mut nonce = [0u8; NONCE_LEN];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = i as u8;
    }
    let sealed = keyring
        .seal_with_nonce(&nonce, b"4111111111111111", &card_aad("tok_1"))
        .unwrap();
    assert_eq!(sealed.key_version, 1);
    assert_eq!(
        sealed.blob,
        hex(concat!(
            "000102030405060708090a0b",
            "7333e72af4d4f32abc70a6ba80d8495c",
            "0ed7d24e22a704474ac00e216b4d1dfe"
        ))
    );
    let opened = keyring.open(1, &sealed.blob, &card_aad("tok_1")).unwrap();
    assert_eq!(opened.as_slice(), b"4111111111111111");
}

/// HMAC-SHA256 over `b"oneclick/fp/v1/" ‖ pan` under key 00 01 … 1f, computed with Python's
/// `hmac` module.
#[test]
fn fingerprint_matches_independent_hmac() {
    let keyring = Keyring::new(vec![(1, key_of(1))], 1, counting_key()).unwrap();
    assert_eq!(
        keyring.fingerprint(b"4111111111111111").to_vec(),
        hex("21ea1dc0ea40295d8b5d4cafa2cb0a434c9b2416f2bd89ca5d91502b338ee8be")
    );
}

/// Length-prefixed parts under key 07…07, computed with Python's `hmac` module.
#[test]
fn request_digest_matches_independent_hmac() {
    let keyring = Keyring::new(vec![(1, key_of(1))], 1, key_of(7)).unwrap();
    assert_eq!(
        keyring.request_digest(&[b"ab", b"c"]).to_vec(),
        hex("86e36d5ea454189edefec1465fb2de937d691233fd0b02f9c57c911ba608781d")
    );
}

#[test]
fn padded_hmac_key_equals_hmac_of_short_key() {
    let key = counting_key();
    let mut ours = key.hmac();
    ours.update(b"message");
    let mut reference = Hmac::<Sha256>::new_from_slice(&key.0).unwrap();
    reference.update(b"message");
    assert_eq!(
        ours.finalize().into_bytes(),
        reference.finalize().into_bytes()
    );
}

// --- sealing and opening -------------------------------------------------------------------

#[test]
fn seal_then_open_round_trips() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring.seal(b"5555555555554444", &card_aad("t1")).unwrap();
    assert_eq!(sealed.key_version, 1);
    assert_eq!(sealed.blob.len(), NONCE_LEN + 16 + TAG_LEN);
    let opened = keyring.open(1, &sealed.blob, &card_aad("t1")).unwrap();
    assert_eq!(opened.as_slice(), b"5555555555554444");
}

#[test]
fn empty_plaintext_round_trips() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring.seal(b"", b"").unwrap();
    assert_eq!(keyring.open(1, &sealed.blob, b"").unwrap().len(), 0);
}

#[test]
fn ciphertext_moved_to_another_row_fails() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring.seal(b"4111111111111111", &card_aad("t1")).unwrap();
    assert_eq!(
        keyring.open(1, &sealed.blob, &card_aad("t2")),
        Err(CryptoError::Decrypt)
    );
    let agreement = keyring.seal(b"x", &agreement_aad(7, "order-1")).unwrap();
    assert_eq!(
        keyring.open(1, &agreement.blob, &agreement_aad(8, "order-1")),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn every_flipped_bit_fails() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
    for byte in 0..sealed.blob.len() {
        for bit in 0..8 {
            let mut tampered = sealed.blob.clone();
            tampered[byte] ^= 1 << bit;
            assert_eq!(
                keyring.open(1, &tampered, b"row"),
                Err(CryptoError::Decrypt),
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn truncated_blob_fails() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
    for len in 0..sealed.blob.len() {
        assert_eq!(
            keyring.open(1, &sealed.blob[..len], b"row"),
            Err(CryptoError::Decrypt)
        );
    }
}

#[test]
fn relabelled_key_version_fails() {
    // Both versions hold the same key bytes: only the version bound in the aad tells them apart.
    let keyring = Keyring::new(vec![(1, key_of(1)), (2, key_of(1))], 1, key_of(0xF0)).unwrap();
    let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
    assert_eq!(
        keyring.open(2, &sealed.blob, b"row"),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn wrong_key_fails() {
    let sealed = ring(&[(1, 1)], 1)
        .seal(b"4111111111111111", b"row")
        .unwrap();
    assert_eq!(
        ring(&[(1, 2)], 1).open(1, &sealed.blob, b"row"),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn unknown_key_version_is_reported() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
    assert_eq!(
        keyring.open(9, &sealed.blob, b"row"),
        Err(CryptoError::UnknownKeyVersion(9))
    );
}

#[test]
fn keyring_without_the_old_key_cannot_open_old_values() {
    let old = ring(&[(1, 1)], 1);
    let sealed = old.seal(b"4111111111111111", b"row").unwrap();
    let rotated_and_pruned = ring(&[(2, 2)], 2);
    assert_eq!(
        rotated_and_pruned.open(1, &sealed.blob, b"row"),
        Err(CryptoError::UnknownKeyVersion(1))
    );
}

#[test]
fn value_sealed_before_rotation_opens_after_it() {
    let before = ring(&[(1, 1)], 1);
    let sealed = before.seal(b"4111111111111111", b"row").unwrap();

    let after = ring(&[(1, 1), (2, 2)], 2);
    assert_eq!(after.current_version(), 2);
    assert_eq!(after.versions(), vec![1, 2]);
    assert_eq!(
        after.open(1, &sealed.blob, b"row").unwrap().as_slice(),
        b"4111111111111111"
    );

    assert!(after.needs_reseal(1));
    let resealed = after.reseal(1, &sealed.blob, b"row").unwrap();
    assert_eq!(resealed.key_version, 2);
    assert!(!after.needs_reseal(resealed.key_version));
    assert_eq!(
        ring(&[(2, 2)], 2)
            .open(2, &resealed.blob, b"row")
            .unwrap()
            .as_slice(),
        b"4111111111111111"
    );
}

fn assert_unique_nonces(count: usize) {
    let keyring = ring(&[(1, 1)], 1);
    let mut seen = HashSet::with_capacity(count);
    for _ in 0..count {
        let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
        let nonce: [u8; NONCE_LEN] = sealed.blob[..NONCE_LEN].try_into().unwrap();
        assert!(seen.insert(nonce), "nonce repeated");
    }
}

#[test]
fn hundred_thousand_seals_never_repeat_a_nonce() {
    assert_unique_nonces(100_000);
}

#[test]
#[ignore = "slow: a million seals"]
fn million_seals_never_repeat_a_nonce() {
    assert_unique_nonces(1_000_000);
}

// --- fingerprints and digests --------------------------------------------------------------

#[test]
fn fingerprint_is_stable_for_the_same_pan_and_across_rotation() {
    let a = ring(&[(1, 1)], 1);
    let b = ring(&[(1, 1), (2, 2)], 2);
    assert_eq!(
        a.fingerprint(b"4111111111111111"),
        b.fingerprint(b"4111111111111111")
    );
    assert_ne!(
        a.fingerprint(b"4111111111111111"),
        a.fingerprint(b"4111111111111112")
    );
}

#[test]
fn fingerprint_differs_under_another_fingerprint_key() {
    let a = Keyring::new(vec![(1, key_of(1))], 1, key_of(0xF0)).unwrap();
    let b = Keyring::new(vec![(1, key_of(1))], 1, key_of(0xF1)).unwrap();
    assert_ne!(
        a.fingerprint(b"4111111111111111"),
        b.fingerprint(b"4111111111111111")
    );
}

#[test]
fn request_digest_separates_parts_and_domains() {
    let keyring = ring(&[(1, 1)], 1);
    assert_ne!(
        keyring.request_digest(&[b"ab", b"c"]),
        keyring.request_digest(&[b"a", b"bc"])
    );
    assert_eq!(
        keyring.request_digest(&[b"ab", b"c"]),
        keyring.request_digest(&[b"ab", b"c"])
    );
    // The same bytes as a fingerprint input give a different value (domain separation).
    assert_ne!(
        keyring.fingerprint(b"4111111111111111"),
        keyring.request_digest(&[b"4111111111111111"])
    );
}

// --- keys, keyrings and key files ----------------------------------------------------------

#[test]
fn master_key_base64_round_trips_and_requires_32_bytes() {
    let key = MasterKey::generate();
    let encoded = key.to_base64();
    assert_eq!(MasterKey::from_base64(&encoded).unwrap(), key);
    assert_eq!(
        MasterKey::from_base64(&format!("  {}\n", encoded.as_str())).unwrap(),
        key
    );
    assert_eq!(
        MasterKey::from_base64(&BASE64.encode([1u8; 31])),
        Err(CryptoError::InvalidKey)
    );
    assert_eq!(
        MasterKey::from_base64(&BASE64.encode([1u8; 33])),
        Err(CryptoError::InvalidKey)
    );
    assert_eq!(
        MasterKey::from_base64("not base64!"),
        Err(CryptoError::InvalidKey)
    );
    assert_ne!(MasterKey::generate(), MasterKey::generate());
}

#[test]
fn debug_never_shows_key_bytes() {
    let key = MasterKey::generate();
    let encoded = key.to_base64().to_string();
    let debug = format!("{key:?}");
    assert_eq!(debug, "MasterKey([REDACTED])");
    assert!(!debug.contains(&encoded));

    let fingerprint_key = MasterKey::generate();
    let fingerprint_encoded = fingerprint_key.to_base64().to_string();
    let keyring = Keyring::new(vec![(3, key.clone())], 3, fingerprint_key).unwrap();
    for debug in [format!("{keyring:?}"), format!("{keyring:#?}")] {
        assert!(!debug.contains(&encoded), "{debug}");
        assert!(!debug.contains(&fingerprint_encoded), "{debug}");
        assert!(debug.contains("REDACTED"));
        assert!(debug.contains("current: 3"));
    }
}

#[test]
fn keyring_rejects_bad_configurations() {
    assert_eq!(
        Keyring::new(vec![(1, key_of(1))], 2, key_of(0xF0)).unwrap_err(),
        CryptoError::UnknownKeyVersion(2)
    );
    assert!(matches!(
        Keyring::new(vec![(0, key_of(1))], 0, key_of(0xF0)),
        Err(CryptoError::KeyFile(_))
    ));
    assert!(matches!(
        Keyring::new(vec![(1, key_of(1)), (1, key_of(2))], 1, key_of(0xF0)),
        Err(CryptoError::KeyFile(_))
    ));
    assert!(matches!(
        Keyring::new(vec![(1, key_of(1))], 1, key_of(1)),
        Err(CryptoError::KeyFile(_))
    ));
    assert_eq!(
        Keyring::new(vec![], 1, key_of(0xF0)).unwrap_err(),
        CryptoError::UnknownKeyVersion(1)
    );
}

#[test]
fn spec_parses_commas_newlines_and_comments() {
    let k1 = key_of(1).to_base64();
    let k2 = key_of(2).to_base64();
    let k3 = key_of(3).to_base64();
    let spec = format!("# rotated 2024-05\n1:{}, 2:{}\n\n3:{},\n", *k1, *k2, *k3);
    let keys = Keyring::parse_spec(&spec).unwrap();
    let versions: Vec<u32> = keys.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(keys[1].1, key_of(2));
}

#[test]
fn spec_rejects_bad_entries_without_echoing_them() {
    let secretish = BASE64.encode([9u8; 31]);
    for spec in [
        format!("1:{secretish}"),
        format!("0:{}", *key_of(1).to_base64()),
        format!("x:{}", *key_of(1).to_base64()),
        format!("1:{},1:{}", *key_of(1).to_base64(), *key_of(2).to_base64()),
        key_of(1).to_base64().to_string(),
    ] {
        let err = Keyring::parse_spec(&spec).unwrap_err();
        assert!(matches!(err, CryptoError::KeyFile(_)), "{spec}");
        assert!(!err.to_string().contains(&secretish));
        assert!(!err.to_string().contains(key_of(1).to_base64().as_str()));
    }
}

fn key_file(current: Option<u32>) -> String {
    let mut text = String::from("# oneclick keys\n\n");
    if let Some(current) = current {
        text.push_str(&format!("current = {current}\n"));
    }
    text.push_str(&format!("fingerprint = {}\n", *key_of(0xF0).to_base64()));
    text.push_str(&format!("key.1 = {}\n", *key_of(1).to_base64()));
    text.push_str(&format!("key.2={}\n", *key_of(2).to_base64()));
    text
}

#[test]
fn key_file_loads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    write_private(&path, &key_file(Some(2)));
    let keyring = Keyring::load_file(&path).unwrap();
    assert_eq!(keyring.current_version(), 2);
    assert_eq!(keyring.versions(), vec![1, 2]);

    // The same keys as built by hand: values cross between them.
    let by_hand = ring(&[(1, 1), (2, 2)], 2);
    let sealed = by_hand.seal(b"4111111111111111", b"row").unwrap();
    assert_eq!(
        keyring.open(2, &sealed.blob, b"row").unwrap().as_slice(),
        b"4111111111111111"
    );
    assert_eq!(
        keyring.fingerprint(b"4111111111111111"),
        by_hand.fingerprint(b"4111111111111111")
    );
}

#[test]
fn missing_key_file_is_a_key_file_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Keyring::load_file(dir.path().join("absent")),
        Err(CryptoError::KeyFile(_))
    ));
}

#[test]
fn key_file_with_several_keys_requires_current() {
    assert!(matches!(
        Keyring::parse_file(&key_file(None)),
        Err(CryptoError::KeyFile(_))
    ));
    let single = format!(
        "fingerprint = {}\nkey.4 = {}\n",
        *key_of(0xF0).to_base64(),
        *key_of(4).to_base64()
    );
    assert_eq!(Keyring::parse_file(&single).unwrap().current_version(), 4);
}

#[test]
fn key_file_rejects_malformed_lines_without_echoing_them() {
    let secretish = BASE64.encode([9u8; 31]);
    let cases = [
        format!("{}key.3 = {secretish}\n", key_file(Some(1))),
        format!("{}nonsense\n", key_file(Some(1))),
        format!("{}colour = blue\n", key_file(Some(1))),
        format!("{}key.1 = {}\n", key_file(Some(1)), *key_of(5).to_base64()),
        format!("{}current = 1\n", key_file(Some(1))),
        key_file(Some(3)),
        key_file(Some(1)).replace("fingerprint", "# fingerprint"),
        format!("current = 1\nfingerprint = {}\n", *key_of(0xF0).to_base64()),
    ];
    for text in cases {
        let err = Keyring::parse_file(&text).unwrap_err();
        assert!(
            matches!(
                err,
                CryptoError::KeyFile(_) | CryptoError::UnknownKeyVersion(_)
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(&secretish));
    }
}

#[test]
fn aad_helpers_have_fixed_shapes() {
    assert_eq!(card_aad("tok"), b"card:tok".to_vec());
    assert_eq!(
        agreement_aad(452739, "A-1"),
        b"agreement:452739:A-1".to_vec()
    );
    assert_ne!(agreement_aad(1, "2:3"), agreement_aad(12, "3"));
}

// --- owner-bound card associated data (finding 7) -------------------------------------------

#[test]
fn card_owner_aad_has_a_fixed_unambiguous_shape() {
    assert_eq!(
        card_owner_aad(42, "carol", "tok"),
        b"card/2/42/5:carol/tok".to_vec()
    );
    // The length prefix: a number holding the separator cannot pose as another split.
    assert_ne!(card_owner_aad(1, "a/b", "c"), card_owner_aad(1, "a", "b/c"));
    assert_eq!(
        card_aad_for(1, 42, "carol", "tok").unwrap(),
        card_aad("tok")
    );
    assert_eq!(
        card_aad_for(2, 42, "carol", "tok").unwrap(),
        card_owner_aad(42, "carol", "tok")
    );
    assert_eq!(
        card_aad_for(3, 42, "carol", "tok"),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn a_card_moved_to_another_customer_or_renamed_owner_does_not_open() {
    let keyring = ring(&[(1, 1)], 1);
    let sealed = keyring
        .seal(b"4111111111111111", &card_owner_aad(7, "carol", "tok"))
        .unwrap();
    assert!(keyring
        .open(1, &sealed.blob, &card_owner_aad(7, "carol", "tok"))
        .is_ok());
    for (customer, number) in [(8, "carol"), (7, "eve"), (8, "eve")] {
        assert_eq!(
            keyring.open(1, &sealed.blob, &card_owner_aad(customer, number, "tok")),
            Err(CryptoError::Decrypt),
            "{customer} {number}"
        );
    }
    // Nor does it pass as a token-only (version 1) row.
    assert_eq!(
        keyring.open(1, &sealed.blob, &card_aad("tok")),
        Err(CryptoError::Decrypt)
    );
}

// --- wrapped key files (envelope encryption) ------------------------------------------------

fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn wrapped_key_file_round_trips_under_its_kek_only() {
    let keyring = ring(&[(1, 1), (2, 2)], 2);
    let kek = LocalKek::new(key_of(0xAA));
    let text = keyring.to_wrapped_file_text(&kek).unwrap();
    assert_eq!(key_file_format(&text).unwrap(), KeyFileFormat::Wrapped);
    // No key is in the file in any plain form.
    for byte in [1u8, 2, 0xF0] {
        assert!(!text.contains(key_of(byte).to_base64().as_str()));
    }
    let back = Keyring::parse_wrapped_file(&text, &kek).unwrap();
    assert_eq!(back.current_version(), 2);
    assert_eq!(back.versions(), vec![1, 2]);
    let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
    assert_eq!(
        back.open(2, &sealed.blob, b"row").unwrap().as_slice(),
        b"4111111111111111"
    );
    assert_eq!(
        back.fingerprint(b"4111111111111111"),
        keyring.fingerprint(b"4111111111111111")
    );
    let wrong = LocalKek::new(key_of(0xAB));
    let err = Keyring::parse_wrapped_file(&text, &wrong).unwrap_err();
    assert!(matches!(err, CryptoError::Unwrap(_)), "{err:?}");
    assert!(err.to_string().contains("wrong KEK"), "{err}");
    // Without a KEK the plaintext reader refuses it, saying why.
    assert_eq!(
        Keyring::parse_file(&text).unwrap_err(),
        CryptoError::KekMissing
    );
}

#[test]
fn a_wrapped_entry_renamed_to_another_entry_does_not_unwrap() {
    let keyring = ring(&[(1, 1)], 1);
    let kek = LocalKek::new(key_of(0xAA));
    let text = keyring.to_wrapped_file_text(&kek).unwrap();
    // Swap the values of `fingerprint` and `key.1`: each is bound to its own name.
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap()
            .to_string()
    };
    let (fp, k1) = (value("fingerprint"), value("key.1"));
    let swapped = text.replace(&fp, "FP").replace(&k1, &fp).replace("FP", &k1);
    assert_eq!(
        Keyring::parse_wrapped_file(&swapped, &kek).unwrap_err(),
        CryptoError::Unwrap("fingerprint".into())
    );
    // A flipped character of a wrapped key fails too.
    let mut tampered = k1.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = text.replace(&k1, std::str::from_utf8(&tampered).unwrap());
    assert!(matches!(
        Keyring::parse_wrapped_file(&tampered, &kek),
        Err(CryptoError::Unwrap(_))
    ));
}

#[test]
fn wrapped_key_file_loads_from_disk_with_its_kek_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, kek_path) = (dir.path().join("keys"), dir.path().join("kek"));
    let kek = LocalKek::generate();
    write_private(&kek_path, &kek.file_text());
    write_private(
        &keys,
        &ring(&[(1, 1)], 1).to_wrapped_file_text(&kek).unwrap(),
    );
    let loaded_kek = LocalKek::load_file(&kek_path).unwrap();
    let keyring = Keyring::load_file_with(&keys, Some(&loaded_kek)).unwrap();
    assert_eq!(keyring.versions(), vec![1]);
    assert_eq!(
        Keyring::load_file_with(&keys, None).unwrap_err(),
        CryptoError::KekMissing
    );
    assert_eq!(
        Keyring::load_file(&keys).unwrap_err(),
        CryptoError::KekMissing
    );
    assert!(!format!("{loaded_kek:?}").contains(kek.file_text().lines().nth(1).unwrap()));
}

#[test]
fn key_files_and_kek_files_that_group_or_others_may_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (keys, kek_path) = (dir.path().join("keys"), dir.path().join("kek"));
    let kek = LocalKek::generate();
    write_private(&kek_path, &kek.file_text());
    write_private(&keys, &key_file(Some(2)));
    for mode in [0o640, 0o604, 0o660, 0o644, 0o606] {
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Keyring::load_file(&keys).unwrap_err();
        assert!(
            err.to_string().contains("chmod 600"),
            "key file mode {mode:o}: {err}"
        );
        std::fs::set_permissions(&kek_path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = LocalKek::load_file(&kek_path).unwrap_err();
        assert!(
            err.to_string().contains("chmod 600"),
            "KEK file mode {mode:o}: {err}"
        );
    }
    // The control: the same files private load.
    for mode in [0o600, 0o400] {
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::set_permissions(&kek_path, std::fs::Permissions::from_mode(mode)).unwrap();
        assert!(Keyring::load_file(&keys).is_ok(), "{mode:o}");
        assert!(LocalKek::load_file(&kek_path).is_ok(), "{mode:o}");
    }
}

#[test]
fn rotation_adds_a_current_key_and_keeps_the_old_ones() {
    let keyring = ring(&[(1, 1), (3, 3)], 3);
    let rotated = keyring.with_new_current_key().unwrap();
    assert_eq!(rotated.current_version(), 4);
    assert_eq!(rotated.versions(), vec![1, 3, 4]);
    let sealed = keyring.seal(b"4111111111111111", b"row").unwrap();
    assert!(rotated.open(3, &sealed.blob, b"row").is_ok());
    assert_eq!(
        rotated.fingerprint(b"4111111111111111"),
        keyring.fingerprint(b"4111111111111111")
    );
}
