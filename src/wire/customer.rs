//! The customer reference that every body naming a customer shares (R1).
//!
//! Callers of the original spell the field `customernumber` (`token.cfm`, `rem_token.cfm`) or
//! `customerNumber` (Token Pay's `payment_token`); our own protocol spells it `customer_number`.
//! The three spellings are written here once: each body flattens a [`CustomerRef`]
//! (`#[serde(flatten)] customer: CustomerRef`), takes any of them, and a JSON string or a number
//! (its exact text, [`text`](super::de::text)). What a body *writes* is its [`Spelling`]: ours on
//! the gateway subjects and commands, the original's on the merchant web services, so a body our
//! client sends to `token.list` reads as the original's.
//!
//! Serde passes the rest of a body through a buffer to reach a flattened struct; a flattened
//! `Option<…>` would turn any error inside it into `None`, so optional references are
//! `CustomerRef<Option<Text>>` ([`OptionalCustomerRef`]), never `Option<CustomerRef>`: a customer
//! number of the wrong type is refused, not ignored.

use std::marker::PhantomData;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::de::Text;

/// The name a customer reference is written under.
pub trait Spelling {
    const FIELD: &'static str;
}

/// `customer_number`: the gateway subjects, the durable commands, Token Pay's `payment_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ours;

/// `customernumber`: the merchant web services, as the original's examples write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Original;

impl Spelling for Ours {
    const FIELD: &'static str = "customer_number";
}

impl Spelling for Original {
    const FIELD: &'static str = "customernumber";
}

/// Whose cards: the merchant's customer number, as received (the engine validates and strips it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CustomerRef<N = Text, S = Ours> {
    #[serde(alias = "customernumber", alias = "customerNumber")]
    customer_number: N,
    #[serde(skip)]
    spelling: PhantomData<S>,
}

impl<N: Serialize, S: Spelling> Serialize for CustomerRef<N, S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let mut body = serializer.serialize_struct("CustomerRef", 1)?;
        body.serialize_field(S::FIELD, &self.customer_number)?;
        body.end()
    }
}

/// The customer of a merchant web-service body, written as the original writes it.
pub type MerchantCustomerRef = CustomerRef<Text, Original>;

/// A customer reference a body may leave out: a gateway order without one is a plain or recurring
/// payment (R1).
pub type OptionalCustomerRef = CustomerRef<Option<Text>>;

impl<S> CustomerRef<Text, S> {
    pub fn new(number: impl Into<String>) -> Self {
        CustomerRef {
            customer_number: Text(number.into()),
            spelling: PhantomData,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.customer_number.0
    }

    pub fn into_string(self) -> String {
        self.customer_number.0
    }
}

impl<S> From<&str> for CustomerRef<Text, S> {
    fn from(number: &str) -> Self {
        CustomerRef::new(number)
    }
}

impl<S> From<String> for CustomerRef<Text, S> {
    fn from(number: String) -> Self {
        CustomerRef::new(number)
    }
}

impl OptionalCustomerRef {
    pub fn some(number: impl Into<String>) -> OptionalCustomerRef {
        Some(number.into()).into()
    }

    pub fn none() -> OptionalCustomerRef {
        None.into()
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.customer_number.as_ref().map(|t| t.0.as_str())
    }

    pub fn into_option(self) -> Option<String> {
        self.customer_number.map(|t| t.0)
    }
}

impl From<Option<String>> for OptionalCustomerRef {
    fn from(number: Option<String>) -> OptionalCustomerRef {
        CustomerRef {
            customer_number: number.map(Text),
            spelling: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Body {
        #[serde(flatten)]
        customer: CustomerRef,
        token: String,
    }

    #[derive(Debug, Deserialize)]
    struct Order {
        #[serde(flatten)]
        customer: OptionalCustomerRef,
    }

    #[test]
    fn every_spelling_and_numbers_are_taken() -> Result<(), serde_json::Error> {
        for json in [
            r#"{"customer_number":"1234","token":"T"}"#,
            r#"{"customernumber":"1234","token":"T"}"#,
            r#"{"customerNumber":1234,"token":"T"}"#,
        ] {
            let body: Body = serde_json::from_str(json)?;
            assert_eq!(body.customer.as_str(), "1234", "{json}");
            assert_eq!(body.token, "T");
        }
        Ok(())
    }

    #[derive(Debug, Deserialize, Serialize)]
    struct MerchantBody {
        #[serde(flatten)]
        customer: MerchantCustomerRef,
    }

    #[test]
    fn each_body_writes_its_spelling() -> Result<(), serde_json::Error> {
        let body = Body {
            customer: "1234".into(),
            token: "T".into(),
        };
        assert_eq!(
            serde_json::to_string(&body)?,
            r#"{"customer_number":"1234","token":"T"}"#
        );
        let merchant = MerchantBody {
            customer: "1234".into(),
        };
        assert_eq!(
            serde_json::to_string(&merchant)?,
            r#"{"customernumber":"1234"}"#
        );
        let back: MerchantBody = serde_json::from_str(r#"{"customer_number":"1234"}"#)?;
        assert_eq!(back.customer.as_str(), "1234");
        Ok(())
    }

    #[test]
    fn a_required_reference_is_a_missing_field_when_absent() {
        let err = serde_json::from_str::<Body>(r#"{"token":"T"}"#).err();
        assert!(
            err.is_some_and(|e| e.to_string().starts_with("missing field `customer_number`")),
            "absent customer number must be a missing field"
        );
    }

    #[test]
    fn two_spellings_at_once_are_refused() {
        let twice = r#"{"customer_number":"1","customernumber":"2","token":"T"}"#;
        assert!(serde_json::from_str::<Body>(twice).is_err());
    }

    #[test]
    fn an_optional_reference_is_none_when_absent_and_refused_when_mistyped(
    ) -> Result<(), serde_json::Error> {
        let absent: Order = serde_json::from_str("{}")?;
        assert_eq!(absent.customer.as_deref(), None);
        let null: Order = serde_json::from_str(r#"{"customernumber":null}"#)?;
        assert_eq!(null.customer.as_deref(), None);
        let given: Order = serde_json::from_str(r#"{"customerNumber":77}"#)?;
        assert_eq!(given.customer.as_deref(), Some("77"));
        // The reason this is not `Option<CustomerRef>`: that would read a boolean as "no customer".
        assert!(serde_json::from_str::<Order>(r#"{"customer_number":true}"#).is_err());
        Ok(())
    }
}
