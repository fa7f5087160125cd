//! Payment outcomes in the original's vocabulary (§7): order states and `AS` response codes.
//!
//! Invariants: the text forms are a public contract, exactly as the original spells them
//! (`In Process`, `PartialApproved`, `AS105`, …); serde uses the same strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// The state of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderState {
    #[serde(rename = "In Process")]
    InProcess,
    Delayed,
    Approved,
    PartialApproved,
    PartialDelayed,
    Canceled,
    PartialCanceled,
    Declined,
    Timeout,
}

impl OrderState {
    pub const ALL: &'static [OrderState] = &[
        OrderState::InProcess,
        OrderState::Delayed,
        OrderState::Approved,
        OrderState::PartialApproved,
        OrderState::PartialDelayed,
        OrderState::Canceled,
        OrderState::PartialCanceled,
        OrderState::Declined,
        OrderState::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::InProcess => "In Process",
            OrderState::Delayed => "Delayed",
            OrderState::Approved => "Approved",
            OrderState::PartialApproved => "PartialApproved",
            OrderState::PartialDelayed => "PartialDelayed",
            OrderState::Canceled => "Canceled",
            OrderState::PartialCanceled => "PartialCanceled",
            OrderState::Declined => "Declined",
            OrderState::Timeout => "Timeout",
        }
    }

    pub fn parse(raw: &str) -> Result<OrderState, DomainError> {
        OrderState::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == raw)
            .ok_or(DomainError::UnknownStoredValue {
                kind: "order state",
            })
    }

    /// Whether the money was (at least partly) taken or held: R5 saves the card, R12 keeps the
    /// reservation.
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            OrderState::Approved
                | OrderState::PartialApproved
                | OrderState::Delayed
                | OrderState::PartialDelayed
        )
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The acquirer's (or our own) answer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseCode {
    AS000,
    AS100,
    AS101,
    AS102,
    AS104,
    AS105,
    AS107,
    AS108,
    AS109,
    AS110,
    AS200,
    AS300,
    AS400,
    AS998,
}

impl ResponseCode {
    pub const ALL: &'static [ResponseCode] = &[
        ResponseCode::AS000,
        ResponseCode::AS100,
        ResponseCode::AS101,
        ResponseCode::AS102,
        ResponseCode::AS104,
        ResponseCode::AS105,
        ResponseCode::AS107,
        ResponseCode::AS108,
        ResponseCode::AS109,
        ResponseCode::AS110,
        ResponseCode::AS200,
        ResponseCode::AS300,
        ResponseCode::AS400,
        ResponseCode::AS998,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::AS000 => "AS000",
            ResponseCode::AS100 => "AS100",
            ResponseCode::AS101 => "AS101",
            ResponseCode::AS102 => "AS102",
            ResponseCode::AS104 => "AS104",
            ResponseCode::AS105 => "AS105",
            ResponseCode::AS107 => "AS107",
            ResponseCode::AS108 => "AS108",
            ResponseCode::AS109 => "AS109",
            ResponseCode::AS110 => "AS110",
            ResponseCode::AS200 => "AS200",
            ResponseCode::AS300 => "AS300",
            ResponseCode::AS400 => "AS400",
            ResponseCode::AS998 => "AS998",
        }
    }

    pub fn parse(raw: &str) -> Result<ResponseCode, DomainError> {
        ResponseCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == raw)
            .ok_or(DomainError::UnknownStoredValue {
                kind: "response code",
            })
    }

    /// English description, as the original documents it.
    pub fn message(self) -> &'static str {
        match self {
            ResponseCode::AS000 => "Approved",
            ResponseCode::AS100 => "Declined",
            ResponseCode::AS101 => "Wrong card data",
            ResponseCode::AS102 => "Insufficient funds",
            ResponseCode::AS104 => "Wrong card expiry date",
            ResponseCode::AS105 => "Limit exceeded",
            ResponseCode::AS107 => "Data error",
            ResponseCode::AS108 => "Fraud suspicion",
            ResponseCode::AS109 => "Processor limit exceeded",
            ResponseCode::AS110 => "3-D Secure authentication required",
            ResponseCode::AS200 => "Repeated payment",
            ResponseCode::AS300 => "Payment in process",
            ResponseCode::AS400 => "No such payment",
            ResponseCode::AS998 => "System error",
        }
    }

    pub fn is_approved(self) -> bool {
        self == ResponseCode::AS000
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn order_states_use_the_original_spelling() {
        let names: Vec<_> = OrderState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "In Process",
                "Delayed",
                "Approved",
                "PartialApproved",
                "PartialDelayed",
                "Canceled",
                "PartialCanceled",
                "Declined",
                "Timeout"
            ]
        );
        for &s in OrderState::ALL {
            assert_eq!(OrderState::parse(s.as_str()), Ok(s));
            let json = serde_json::to_string(&s).expect("json");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<OrderState>(&json).expect("json"), s);
        }
        assert_eq!(
            OrderState::parse("InProcess")
                .expect_err("spelling")
                .fault(),
            Fault::Internal
        );
    }

    #[test]
    fn response_codes_round_trip_and_have_messages() {
        for &c in ResponseCode::ALL {
            assert_eq!(ResponseCode::parse(c.as_str()), Ok(c));
            assert!(!c.message().is_empty());
            let json = serde_json::to_string(&c).expect("json");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(
                serde_json::from_str::<ResponseCode>(&json).expect("json"),
                c
            );
        }
        assert_eq!(ResponseCode::AS105.message(), "Limit exceeded");
        assert!(ResponseCode::AS000.is_approved());
        assert!(!ResponseCode::AS100.is_approved());
        assert!(ResponseCode::parse("AS999").is_err());
    }

    #[test]
    fn approved_states_are_the_ones_that_took_money() {
        assert!(OrderState::Approved.is_approved());
        assert!(OrderState::PartialApproved.is_approved());
        assert!(!OrderState::Declined.is_approved());
        assert!(!OrderState::Timeout.is_approved());
        assert!(!OrderState::InProcess.is_approved());
    }
}
