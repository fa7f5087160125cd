//! The card verification code (CVC2/CVV2), used for one authorization only (R8).
//!
//! Invariants: 3 or 4 ASCII digits. A secret: `Debug` and `Display` print `[REDACTED]`, there is no
//! `Serialize`, memory is wiped on drop, and errors never quote it. It is never stored, logged or
//! queued; R16 does not compare it.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{CardBrand, DomainError};

/// R8: a merchant created without naming `need_cvc` asks for the CVC2 when a customer pays with
/// a saved card on the payment page. The reference describes One Click as "the payment requires
/// only confirmation by the CVC2 code" (000, 003), and keeps the CVC2-less payment for CIT COF
/// ("for subsequent operations CIT COF with a saved card, CVC2 will usually not be requested",
/// 003), which is Token Pay here (R14: never a CVC) whatever this setting says. See
/// docs/rules.md, R8.
pub const DEFAULT_NEED_CVC: bool = true;

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Cvc(String);

impl Cvc {
    pub fn parse(raw: &str) -> Result<Cvc, DomainError> {
        if !(3..=4).contains(&raw.len()) || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::InvalidCvc {
                reason: "must be 3 or 4 digits",
            });
        }
        Ok(Cvc(raw.to_string()))
    }

    /// The digits, for the acquirer only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// AmEx codes have 4 digits, all others 3.
    pub fn fits(&self, brand: CardBrand) -> bool {
        let expected = if brand == CardBrand::Amex { 4 } else { 3 };
        self.0.len() == expected
    }
}

impl fmt::Debug for Cvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvc([REDACTED])")
    }
}

impl fmt::Display for Cvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn cvc_of_three_or_four_digits_is_accepted() {
        assert_eq!(Cvc::parse("123").expect("3").expose(), "123");
        assert_eq!(Cvc::parse("0123").expect("4").expose(), "0123");
    }

    #[test]
    fn cvc_refuses_other_lengths_and_characters() {
        for raw in ["", "12", "12345", "12a", " 123", "١٢٣"] {
            let err = Cvc::parse(raw).expect_err("invalid");
            assert_eq!(err.fault(), Fault::InvalidCvc);
            assert!(!err.to_string().contains("12"));
        }
    }

    #[test]
    fn r8_cvc_never_prints_its_digits() {
        let cvc = Cvc::parse("987").expect("valid");
        assert_eq!(format!("{cvc}"), "[REDACTED]");
        assert!(!format!("{cvc:?}").contains("987"));
    }

    #[test]
    fn cvc_length_fits_the_brand() {
        let three = Cvc::parse("123").expect("3");
        let four = Cvc::parse("1234").expect("4");
        assert!(three.fits(CardBrand::Visa));
        assert!(!three.fits(CardBrand::Amex));
        assert!(four.fits(CardBrand::Amex));
        assert!(!four.fits(CardBrand::Mir));
    }
}
