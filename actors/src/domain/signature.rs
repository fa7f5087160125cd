//! R2: order signatures. An order carrying `customer_number` is signed by the merchant with
//! HMAC-SHA256 under its secret key over `merchant_id;order_number;order_amount;order_currency;
//! customer_number`, values exactly as received (before any stripping), Base64 (standard alphabet,
//! padded).
//!
//! Invariants: comparison is constant-time (`Mac::verify_slice`); a missing, undecodable or wrong
//! signature is the same [`DomainError::InvalidSignature`], so a caller learns nothing about which.
//!
//! Key rotation (`oneclick admin merchant rotate-signing-key --overlap D`): during the overlap a
//! signature verifies under the current key or the previous one ([`verify_rotating`]); once the
//! overlap ends only the current key does. The caller decides whether the previous key is still
//! inside its overlap (`MerchantRecord::previous_signature_key_at`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::DomainError;

type HmacSha256 = Hmac<Sha256>;

/// The signed message: the five values as received, joined with `;`.
pub fn message(
    merchant_id: &str,
    order_number: &str,
    amount: &str,
    currency: &str,
    customer_number: &str,
) -> String {
    [merchant_id, order_number, amount, currency, customer_number].join(";")
}

/// Base64 of HMAC-SHA256(`key`, `msg`).
pub fn sign(key: &[u8], msg: &str) -> String {
    // HMAC accepts keys of any length, so this never fails; an empty string would never verify.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(msg.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `signature_b64` against `msg` in constant time.
pub fn verify(key: &[u8], msg: &str, signature_b64: &str) -> Result<(), DomainError> {
    let tag = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| DomainError::InvalidSignature)?;
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|_| DomainError::InvalidSignature)?;
    mac.update(msg.as_bytes());
    mac.verify_slice(&tag)
        .map_err(|_| DomainError::InvalidSignature)
}

/// Checks `signature_b64` under `current`, then under `previous` when given (a rotation's
/// overlap). Both comparisons are constant-time; the error is the same whichever key failed.
pub fn verify_rotating(
    current: &[u8],
    previous: Option<&[u8]>,
    msg: &str,
    signature_b64: &str,
) -> Result<(), DomainError> {
    match (verify(current, msg, signature_b64), previous) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(previous)) => verify(previous, msg, signature_b64),
        (Err(e), None) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    const KEY: &[u8] = b"merchant-secret-key";

    #[test]
    fn r2_message_joins_values_as_received() {
        assert_eq!(
            message("452739", "ord-1", "10.34", "RUB", "<cust>1"),
            "452739;ord-1;10.34;RUB;<cust>1"
        );
    }

    #[test]
    fn r2_signature_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected_hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let tag = STANDARD
            .decode(sign(b"Jefe", "what do ya want for nothing?"))
            .expect("base64");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected_hex);
    }

    #[test]
    fn r2_correct_signature_verifies() {
        let msg = message("452739", "1", "10.34", "RUB", "1234");
        let sig = sign(KEY, &msg);
        assert_eq!(sig.len(), 44);
        assert_eq!(verify(KEY, &msg, &sig), Ok(()));
    }

    #[test]
    fn r2_wrong_key_message_or_signature_is_refused() {
        let msg = message("452739", "1", "10.34", "RUB", "1234");
        let sig = sign(KEY, &msg);
        let other = message("452739", "1", "10.35", "RUB", "1234");
        let cases = [
            verify(b"other key", &msg, &sig),
            verify(KEY, &other, &sig),
            verify(KEY, &msg, ""),
            verify(KEY, &msg, "not base64 !!"),
            verify(KEY, &msg, &STANDARD.encode([0u8; 32])),
            verify(KEY, &msg, &sig[..20]),
        ];
        for result in cases {
            let err = result.expect_err("refused");
            assert_eq!(err, DomainError::InvalidSignature);
            assert_eq!(err.fault(), Fault::InvalidSignature);
        }
    }

    #[test]
    fn during_a_rotation_overlap_the_old_and_the_new_key_verify_and_no_other() {
        let msg = message("452739", "1", "10.34", "RUB", "1234");
        let (old, new) = (b"old key".as_slice(), b"new key".as_slice());
        assert_eq!(
            verify_rotating(new, Some(old), &msg, &sign(old, &msg)),
            Ok(())
        );
        assert_eq!(
            verify_rotating(new, Some(old), &msg, &sign(new, &msg)),
            Ok(())
        );
        assert_eq!(
            verify_rotating(new, Some(old), &msg, &sign(b"other", &msg)),
            Err(DomainError::InvalidSignature)
        );
        // Overlap over: the caller passes no previous key.
        assert_eq!(
            verify_rotating(new, None, &msg, &sign(old, &msg)),
            Err(DomainError::InvalidSignature)
        );
    }
}
