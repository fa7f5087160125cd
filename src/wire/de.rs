//! Lenient field deserializers for what callers of the original send: ids and amounts as JSON
//! strings or numbers, booleans as `true`/`1`/`"yes"`.
//!
//! Invariants:
//! - a value is never silently changed: a JSON float becomes text only when its shortest
//!   round-trip form has at most 15 significant digits (what an `f64` holds exactly), otherwise it
//!   is refused, so `999999999999999.99` sent as a number cannot turn into another amount;
//! - error messages are our own fixed texts and never quote the value (a card number sent as a
//!   JSON number must not end up in an error string).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A `merchant_id` sent as `"452739"` (as the original does) or `452739`. Any integer is taken
/// here; non-positive ones are refused later with `UnknownMerchant` (no such merchant can exist).
pub fn merchant_id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor("an integer merchant_id"))
}

/// An integer sent as a JSON integer or a decimal string (`token_type`, `offset`, `limit`).
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor("an integer"))
}

/// Optional [`int`]; `null` is absent.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_option(OptionOf(IntVisitor("an integer")))
}

/// Text sent as a JSON string or number (order numbers, amounts, expiry, customer numbers).
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(TextVisitor)
}

/// [`text`] as a type, for a field whose absence its type decides: a missing `Text` is a missing
/// field, a missing `Option<Text>` is `None` (inside a flattened struct, where `#[serde(default)]`
/// cannot tell the two apart). Serializes as a JSON string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        text(d).map(Text)
    }
}

/// Optional [`text`]; `null` is absent.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(OptionOf(TextVisitor))
}

/// Optional boolean: `true`/`false`, `1`/`0`, or the strings `true`, `false`, `1`, `0`, `yes`,
/// `no`, `y`, `n` (any case); `null` is absent.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_option(OptionOf(BoolVisitor))
}

struct IntVisitor(&'static str);

impl<'de> Visitor<'de> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom("integer out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom("expected a decimal integer"));
        }
        v.parse()
            .map_err(|_| E::custom("expected a decimal integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<i64, E> {
        Err(E::custom("expected an integer, not a fraction"))
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        exact_float_text(v).ok_or_else(|| {
            E::custom("number has more digits than it can carry exactly; send it as a string")
        })
    }
}

/// The shortest text of `v` when that text is exact (≤ 15 significant digits, finite).
fn exact_float_text(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let text = format!("{v}");
    let significant = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    (significant <= 15).then_some(text)
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::custom("expected a boolean")),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::custom("expected a boolean")),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" => Ok(true),
            "false" | "0" | "no" | "n" => Ok(false),
            _ => Err(E::custom("expected a boolean")),
        }
    }
}

/// Adapts a value visitor to `Option`: `null` is `None`, anything else goes to the inner visitor.
struct OptionOf<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OptionOf<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Probe {
        #[serde(deserialize_with = "merchant_id")]
        merchant_id: i64,
        #[serde(default, deserialize_with = "opt_text")]
        amount: Option<String>,
        #[serde(default, deserialize_with = "opt_bool")]
        save: Option<bool>,
        #[serde(default, deserialize_with = "opt_int")]
        limit: Option<i64>,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn merchant_id_as_string_or_number() -> Result<(), serde_json::Error> {
        assert_eq!(probe(r#"{"merchant_id":"452739"}"#)?.merchant_id, 452739);
        assert_eq!(probe(r#"{"merchant_id":452739}"#)?.merchant_id, 452739);
        assert_eq!(probe(r#"{"merchant_id":"-3"}"#)?.merchant_id, -3);
        for bad in [r#""45a""#, r#""""#, "1.5", r#"" 1""#, "true", r#""+1""#] {
            assert!(
                probe(&format!(r#"{{"merchant_id":{bad}}}"#)).is_err(),
                "{bad}"
            );
        }
        Ok(())
    }

    #[test]
    fn amounts_as_string_or_exact_number() -> Result<(), serde_json::Error> {
        assert_eq!(
            probe(r#"{"merchant_id":1,"amount":"10.34"}"#)?
                .amount
                .as_deref(),
            Some("10.34")
        );
        assert_eq!(
            probe(r#"{"merchant_id":1,"amount":10.34}"#)?
                .amount
                .as_deref(),
            Some("10.34")
        );
        assert_eq!(
            probe(r#"{"merchant_id":1,"amount":100}"#)?
                .amount
                .as_deref(),
            Some("100")
        );
        assert_eq!(probe(r#"{"merchant_id":1,"amount":null}"#)?.amount, None);
        assert!(probe(r#"{"merchant_id":1,"amount":999999999999999.99}"#).is_err());
        Ok(())
    }

    #[test]
    fn lenient_booleans_and_integers() -> Result<(), serde_json::Error> {
        for (raw, want) in [
            ("true", true),
            ("0", false),
            (r#""yes""#, true),
            (r#""N""#, false),
        ] {
            assert_eq!(
                probe(&format!(r#"{{"merchant_id":1,"save":{raw}}}"#))?.save,
                Some(want)
            );
        }
        assert!(probe(r#"{"merchant_id":1,"save":"maybe"}"#).is_err());
        assert_eq!(probe(r#"{"merchant_id":1,"limit":"20"}"#)?.limit, Some(20));
        assert_eq!(probe(r#"{"merchant_id":1}"#)?.limit, None);
        Ok(())
    }

    #[test]
    fn errors_never_quote_the_value() {
        let err = probe(r#"{"merchant_id":1,"amount":4111111111111111.99}"#)
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.is_empty());
        assert!(!err.contains("4111111111111111"), "{err}");
    }
}
