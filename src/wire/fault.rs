//! The fault reply in the original's shape: `{"fault":{"detail":"…","faultcode":N,"faultstring":M}}`.
//!
//! Invariants: `faultcode` and `faultstring` are JSON integers from the stable table of
//! [`Fault`]; `detail` is that table's text in the requested language and nothing else (no cause,
//! no echo of input), so a fault can never carry card data.

use oneclick_actors::fault::{Fault, Language};
use serde::{Deserialize, Serialize};

/// The inner object of a fault reply; also the `fault` of a command event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultBody {
    pub detail: String,
    /// First code: the category (1 request, 2 caller, 3 field, 4 state, 9 oneclick).
    pub faultcode: u32,
    /// Second code: the specific fault within the category.
    pub faultstring: u32,
}

impl FaultBody {
    pub fn new(fault: Fault, language: Language) -> FaultBody {
        let (faultcode, faultstring) = fault.codes();
        FaultBody {
            detail: fault.detail(language).to_string(),
            faultcode,
            faultstring,
        }
    }

    /// The table entry these codes name, if any (for clients and tests).
    pub fn fault(&self) -> Option<Fault> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| f.codes() == (self.faultcode, self.faultstring))
    }
}

/// A fault reply, sent instead of the normal reply of any request-reply subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultReply {
    pub fault: FaultBody,
}

impl FaultReply {
    pub fn new(fault: Fault, language: Language) -> FaultReply {
        FaultReply {
            fault: FaultBody::new(fault, language),
        }
    }

    /// The JSON bytes to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of a string and two integers always serializes; the fallback is unreachable
        // but keeps this infallible without unwrap.
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"fault":{"detail":"Internal error","faultcode":9,"faultstring":1}}"#.to_vec()
        })
    }
}

impl From<Fault> for FaultReply {
    fn from(fault: Fault) -> Self {
        FaultReply::new(fault, Language::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_reply_has_the_original_shape_with_integer_codes() {
        let json =
            String::from_utf8(FaultReply::new(Fault::TokenNotFound, Language::En).to_bytes())
                .unwrap_or_default();
        assert_eq!(
            json,
            r#"{"fault":{"detail":"Token not found","faultcode":4,"faultstring":1}}"#
        );
    }

    #[test]
    fn detail_follows_the_language_and_codes_round_trip() {
        for &fault in Fault::ALL {
            let ru = FaultReply::new(fault, Language::Ru);
            assert_eq!(ru.fault.detail, fault.detail(Language::Ru));
            assert_eq!(ru.fault.fault(), Some(fault));
        }
        assert_eq!(
            FaultReply::from(Fault::Internal),
            FaultReply::new(Fault::Internal, Language::En)
        );
    }
}
