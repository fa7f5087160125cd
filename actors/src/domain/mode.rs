//! R18: the merchant's One Click mode.
//!
//! Invariants: `standard` saves new cards and pays with saved ones; `saved_cards_only` pays with
//! saved cards and never offers to save a new one; `save_only` saves cards (by payments or
//! registrations) and refuses saved-card payments.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantMode {
    #[default]
    Standard,
    SavedCardsOnly,
    SaveOnly,
}

impl MerchantMode {
    pub const ALL: &'static [MerchantMode] = &[
        MerchantMode::Standard,
        MerchantMode::SavedCardsOnly,
        MerchantMode::SaveOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MerchantMode::Standard => "standard",
            MerchantMode::SavedCardsOnly => "saved_cards_only",
            MerchantMode::SaveOnly => "save_only",
        }
    }

    pub fn parse(raw: &str) -> Result<MerchantMode, DomainError> {
        MerchantMode::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == raw)
            .ok_or(DomainError::InvalidMode)
    }

    /// Whether a new card may be saved (after an approved payment or registration).
    pub fn may_save_new_cards(self) -> bool {
        matches!(self, MerchantMode::Standard | MerchantMode::SaveOnly)
    }

    /// Whether a payment with a saved card (page, Token Pay) is allowed.
    pub fn may_pay_with_saved_card(self) -> bool {
        matches!(self, MerchantMode::Standard | MerchantMode::SavedCardsOnly)
    }
}

impl fmt::Display for MerchantMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn r18_standard_saves_and_pays_with_saved_cards() {
        let m = MerchantMode::Standard;
        assert!(m.may_save_new_cards() && m.may_pay_with_saved_card());
    }

    #[test]
    fn r18_saved_cards_only_never_offers_saving() {
        let m = MerchantMode::SavedCardsOnly;
        assert!(m.may_pay_with_saved_card());
        assert!(!m.may_save_new_cards());
    }

    #[test]
    fn r18_save_only_refuses_saved_card_payments() {
        let m = MerchantMode::SaveOnly;
        assert!(m.may_save_new_cards());
        assert!(!m.may_pay_with_saved_card());
    }

    #[test]
    fn modes_round_trip_through_their_names() {
        for &m in MerchantMode::ALL {
            assert_eq!(MerchantMode::parse(m.as_str()), Ok(m));
            let json = serde_json::to_string(&m).expect("json");
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert_eq!(MerchantMode::default(), MerchantMode::Standard);
        assert_eq!(
            MerchantMode::parse("Standard").expect_err("case").fault(),
            Fault::InvalidSettings
        );
    }
}
