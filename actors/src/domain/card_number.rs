//! Card numbers (PANs) and card brands.
//!
//! Invariants: a [`Pan`] holds 12–19 ASCII digits that pass the Luhn check; it is a secret, so it
//! prints only masked (first 6 + last 4, R9) in `Debug` and `Display`, has no `Serialize`, and wipes
//! its memory on drop. Errors about a card number never quote it. The brand is derived from the
//! number by the ordered table in [`CardBrand::detect`]; an unknown range is [`CardBrand::Other`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::DomainError;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 19;

/// A card's payment system, as shown to merchants (`brand` of the token list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Mir,
    Maestro,
    Amex,
    Jcb,
    UnionPay,
    Other,
}

/// `(prefix length, first prefix, last prefix, brand)`: the first matching row wins, so the narrow
/// 4-digit ranges come before the 1- and 2-digit ones. Ranges not listed (Discover 60/64/65, …)
/// are [`CardBrand::Other`]. AmEx additionally needs 15 digits.
const BRAND_TABLE: &[(usize, u32, u32, CardBrand)] = &[
    (4, 2200, 2204, CardBrand::Mir),
    (4, 2221, 2720, CardBrand::Mastercard),
    (4, 3528, 3589, CardBrand::Jcb),
    (2, 34, 34, CardBrand::Amex),
    (2, 37, 37, CardBrand::Amex),
    (1, 4, 4, CardBrand::Visa),
    (2, 51, 55, CardBrand::Mastercard),
    (2, 50, 50, CardBrand::Maestro),
    (2, 56, 58, CardBrand::Maestro),
    (2, 62, 62, CardBrand::UnionPay),
    (2, 81, 81, CardBrand::UnionPay),
    (2, 61, 61, CardBrand::Maestro),
    (2, 63, 63, CardBrand::Maestro),
    (2, 66, 69, CardBrand::Maestro),
];

impl CardBrand {
    pub const ALL: &'static [CardBrand] = &[
        CardBrand::Visa,
        CardBrand::Mastercard,
        CardBrand::Mir,
        CardBrand::Maestro,
        CardBrand::Amex,
        CardBrand::Jcb,
        CardBrand::UnionPay,
        CardBrand::Other,
    ];

    /// The display and storage name (`VISA`, `MasterCard`, `MIR`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CardBrand::Visa => "VISA",
            CardBrand::Mastercard => "MasterCard",
            CardBrand::Mir => "MIR",
            CardBrand::Maestro => "Maestro",
            CardBrand::Amex => "AmEx",
            CardBrand::Jcb => "JCB",
            CardBrand::UnionPay => "UnionPay",
            CardBrand::Other => "Other",
        }
    }

    /// Reads a stored name written by [`CardBrand::as_str`].
    pub fn from_db(raw: &str) -> Result<CardBrand, DomainError> {
        CardBrand::ALL
            .iter()
            .copied()
            .find(|b| b.as_str() == raw)
            .ok_or(DomainError::UnknownStoredValue { kind: "card brand" })
    }

    /// The brand of a string of digits (see [`BRAND_TABLE`]).
    pub fn detect(digits: &str) -> CardBrand {
        for &(len, first, last, brand) in BRAND_TABLE {
            let Some(prefix) = digits.get(..len).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if (first..=last).contains(&prefix) {
                if brand == CardBrand::Amex && digits.len() != 15 {
                    return CardBrand::Other;
                }
                return brand;
            }
        }
        CardBrand::Other
    }
}

impl fmt::Display for CardBrand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CardBrand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CardBrand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CardBrand, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CardBrand::from_db(&raw).map_err(serde::de::Error::custom)
    }
}

/// A full card number. Secret: see the module header.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pan(String);

impl Pan {
    /// Accepts digits, optionally grouped by single spaces or dashes (`4123 6200 0007 0028`).
    pub fn parse(raw: &str) -> Result<Pan, DomainError> {
        let invalid = |reason| DomainError::InvalidCardNumber { reason };
        let mut digits = Zeroizing::new(String::with_capacity(MAX_LEN));
        let mut previous_was_digit = false;
        for c in raw.chars() {
            if c.is_ascii_digit() {
                if digits.len() == MAX_LEN {
                    return Err(invalid("more than 19 digits"));
                }
                digits.push(c);
                previous_was_digit = true;
            } else if c == ' ' || c == '-' {
                if !previous_was_digit {
                    return Err(invalid("separators only between digit groups"));
                }
                previous_was_digit = false;
            } else {
                return Err(invalid("only digits, spaces and dashes are allowed"));
            }
        }
        if !previous_was_digit && !digits.is_empty() {
            return Err(invalid("separators only between digit groups"));
        }
        if digits.len() < MIN_LEN {
            return Err(invalid("fewer than 12 digits"));
        }
        if !luhn_valid(&digits) {
            return Err(invalid("check digit is wrong"));
        }
        Ok(Pan(std::mem::take(&mut *digits)))
    }

    /// The digits. Only for the vault's encryption and the acquirer; never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 6 digits (the BIN).
    pub fn bin(&self) -> &str {
        &self.0[..6]
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// R9: first 6, one `*` per hidden digit, last 4 (`412362******0028`).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    pub fn brand(&self) -> CardBrand {
        CardBrand::detect(&self.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (a PAN has at least 12 digits); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Masks a string of at least 10 digits as R9 shows it; shorter input is fully starred.
pub fn mask(digits: &str) -> String {
    let n = digits.len();
    if n < 10 || !digits.is_ascii() {
        return "*".repeat(digits.chars().count());
    }
    format!("{}{}{}", &digits[..6], "*".repeat(n - 10), &digits[n - 4..])
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

/// The Luhn (mod 10) check over a string of ASCII digits; anything else is invalid.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    luhn_sum(digits, false).is_multiple_of(10)
}

/// The digit that makes `prefix` + digit Luhn-valid; `None` when `prefix` is not all digits.
pub fn luhn_check_digit(prefix: &str) -> Option<char> {
    if !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let check = (10 - luhn_sum(prefix, true) % 10) % 10;
    char::from_digit(check, 10)
}

/// Sum of the Luhn digits from the right; `double_first` when the rightmost digit of `digits` is
/// itself in a doubled position (i.e. a check digit will follow).
fn luhn_sum(digits: &str, double_first: bool) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if (i % 2 == 0) == double_first {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;
    use proptest::prelude::*;

    /// A Luhn-valid number: `prefix`, then `fill` repeated, then the check digit, `len` in all.
    fn valid(prefix: &str, len: usize) -> String {
        let mut s = prefix.to_string();
        while s.len() < len - 1 {
            s.push('0');
        }
        let check = luhn_check_digit(&s).expect("digits");
        s.push(check);
        s
    }

    #[test]
    fn known_test_numbers_pass_luhn() {
        for n in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "2200000000000004",
            "4123620000070028",
        ] {
            assert!(luhn_valid(n), "{n}");
        }
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("41111111111a1111"));
    }

    #[test]
    fn check_digit_completes_a_prefix() {
        assert_eq!(luhn_check_digit("411111111111111"), Some('1'));
        assert_eq!(luhn_check_digit("37828224631000"), Some('5'));
        assert_eq!(luhn_check_digit("4x"), None);
    }

    #[test]
    fn r9_pan_is_masked_first_six_last_four() {
        let pan = Pan::parse("4123620000070028").expect("valid");
        assert_eq!(pan.masked(), "412362******0028");
        assert_eq!(pan.bin(), "412362");
        assert_eq!(pan.last4(), "0028");
        assert_eq!(pan.brand(), CardBrand::Visa);
        assert_eq!(pan.len(), 16);
    }

    #[test]
    fn r9_pan_never_prints_its_digits() {
        let pan = Pan::parse("4123620000070028").expect("valid");
        assert_eq!(format!("{pan:?}"), "Pan(412362******0028)");
        assert_eq!(format!("{pan}"), "Pan(412362******0028)");
        assert!(!format!("{pan:?}").contains("4123620000070028"));
    }

    #[test]
    fn pan_accepts_single_spaces_or_dashes_between_groups() {
        for raw in [
            "4123 6200 0007 0028",
            "4123-6200-0007-0028",
            "4123620000 070028",
        ] {
            assert_eq!(Pan::parse(raw).expect(raw).expose(), "4123620000070028");
        }
    }

    #[test]
    fn pan_refuses_bad_layout_length_or_check_digit() {
        for raw in [
            "",
            " 4123620000070028",
            "4123620000070028 ",
            "4123  620000070028",
            "4123--620000070028",
            "4123.6200.0007.0028",
            "412362000000002x",
            "4123620000000027",
            "41236200005",
            "41111111111111111111",
        ] {
            let err = Pan::parse(raw).expect_err(raw);
            assert_eq!(err.fault(), Fault::InvalidCardNumber);
        }
    }

    #[test]
    fn pan_errors_never_quote_the_number() {
        let raw = "4123620000000027";
        let err = Pan::parse(raw).expect_err("bad check digit");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("4123"), "{text}");
        assert!(!text.contains("0027"), "{text}");
    }

    #[test]
    fn brands_are_detected_from_the_bin_table() {
        let cases = [
            ("4", 16, CardBrand::Visa),
            ("51", 16, CardBrand::Mastercard),
            ("55", 16, CardBrand::Mastercard),
            ("2221", 16, CardBrand::Mastercard),
            ("2720", 16, CardBrand::Mastercard),
            ("2200", 16, CardBrand::Mir),
            ("2204", 16, CardBrand::Mir),
            ("2205", 16, CardBrand::Other),
            ("34", 15, CardBrand::Amex),
            ("37", 15, CardBrand::Amex),
            ("37", 16, CardBrand::Other),
            ("3528", 16, CardBrand::Jcb),
            ("3589", 16, CardBrand::Jcb),
            ("62", 16, CardBrand::UnionPay),
            ("81", 16, CardBrand::UnionPay),
            ("50", 16, CardBrand::Maestro),
            ("57", 18, CardBrand::Maestro),
            ("6759", 19, CardBrand::Maestro),
            ("6011", 16, CardBrand::Other),
            ("65", 16, CardBrand::Other),
            ("9", 16, CardBrand::Other),
        ];
        for (prefix, len, brand) in cases {
            let pan = Pan::parse(&valid(prefix, len)).expect(prefix);
            assert_eq!(pan.brand(), brand, "{prefix}");
        }
    }

    #[test]
    fn brand_names_round_trip_through_the_database_form() {
        for &b in CardBrand::ALL {
            assert_eq!(CardBrand::from_db(b.as_str()), Ok(b));
        }
        assert_eq!(CardBrand::Mastercard.as_str(), "MasterCard");
        assert_eq!(CardBrand::Amex.as_str(), "AmEx");
        let json = serde_json::to_string(&CardBrand::Mastercard).expect("json");
        assert_eq!(json, "\"MasterCard\"");
        assert_eq!(
            serde_json::from_str::<CardBrand>(&json).expect("json"),
            CardBrand::Mastercard
        );
        let err = CardBrand::from_db("Diners").expect_err("unknown");
        assert_eq!(err.fault(), Fault::Internal);
    }

    #[test]
    fn short_pan_is_masked_with_two_stars() {
        let pan = Pan::parse(&valid("4", 12)).expect("12 digits");
        assert_eq!(pan.masked().len(), 12);
        assert_eq!(&pan.masked()[6..8], "**");
    }

    fn brand_prefix() -> impl Strategy<Value = (String, usize, CardBrand)> {
        prop_oneof![
            (Just("4".to_string()), 13usize..=19, Just(CardBrand::Visa)),
            (
                (51u32..=55).prop_map(|p| p.to_string()),
                Just(16usize),
                Just(CardBrand::Mastercard)
            ),
            (
                (2221u32..=2720).prop_map(|p| p.to_string()),
                Just(16usize),
                Just(CardBrand::Mastercard)
            ),
            (
                (2200u32..=2204).prop_map(|p| p.to_string()),
                16usize..=19,
                Just(CardBrand::Mir)
            ),
            (
                prop_oneof![Just("34".to_string()), Just("37".to_string())],
                Just(15usize),
                Just(CardBrand::Amex)
            ),
            (
                (3528u32..=3589).prop_map(|p| p.to_string()),
                16usize..=19,
                Just(CardBrand::Jcb)
            ),
            (
                Just("62".to_string()),
                16usize..=19,
                Just(CardBrand::UnionPay)
            ),
            (
                prop_oneof![
                    Just("50".to_string()),
                    Just("56".to_string()),
                    Just("58".to_string()),
                    Just("63".to_string()),
                    Just("67".to_string())
                ],
                12usize..=19,
                Just(CardBrand::Maestro)
            ),
        ]
    }

    proptest! {
        #[test]
        fn generated_pans_parse_mask_and_detect_their_brand(
            (prefix, len, brand) in brand_prefix(),
            body in proptest::collection::vec(0u8..10, 19),
        ) {
            let mut digits = prefix.clone();
            for d in body.iter().take(len - 1 - prefix.len()) {
                digits.push(char::from(b'0' + d));
            }
            digits.push(luhn_check_digit(&digits).expect("digits"));
            prop_assert_eq!(digits.len(), len);

            let pan = Pan::parse(&digits).expect("valid");
            prop_assert_eq!(pan.expose(), digits.as_str());
            prop_assert_eq!(pan.brand(), brand);
            let masked = pan.masked();
            prop_assert_eq!(masked.len(), len);
            prop_assert_eq!(&masked[..6], &digits[..6]);
            prop_assert_eq!(&masked[len - 4..], &digits[len - 4..]);
            prop_assert!(masked[6..len - 4].chars().all(|c| c == '*'));
            let printed = format!("{pan:?}{pan}");
            prop_assert!(!printed.contains(&digits));
        }

        #[test]
        fn changing_one_digit_breaks_luhn(
            (prefix, len, _brand) in brand_prefix(),
            body in proptest::collection::vec(0u8..10, 19),
            position in 0usize..19,
            delta in 1u8..10,
        ) {
            let mut digits = prefix.clone();
            for d in body.iter().take(len - 1 - prefix.len()) {
                digits.push(char::from(b'0' + d));
            }
            digits.push(luhn_check_digit(&digits).expect("digits"));
            let mut bytes = digits.into_bytes();
            let i = position % len;
            bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).expect("ascii");
            prop_assert!(!luhn_valid(&changed));
            prop_assert!(Pan::parse(&changed).is_err());
        }
    }
}
