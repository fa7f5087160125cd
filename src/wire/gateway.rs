//! Messages of the payment page's request-reply subjects (`<p>.v1.gw.*`): what the gateway sends
//! (`*Body`), what oneclick answers (`*Reply`), and the conversions to and from the engine.
//!
//! Invariants:
//! - values stay *as received* (strings; numbers turned into their exact text): the engine
//!   validates them, and R2's signature is computed over the raw customer number;
//! - card number and CVC deserialize straight into [`SecretString`], so no `Debug` prints them;
//! - `into_request` checks only what the wire layer owns (merchant id positive, language); every
//!   product rule stays in the engine.

use oneclick_actors::domain::{CustomerStatus, OrderKind, OrderState, ResponseCode};
use oneclick_actors::engine::replies::{MaskedCard, Offer, OfferCard, PaymentResult, TokenRemoved};
use oneclick_actors::engine::requests::{
    AuditActor, DeleteCardRequest, NewCardInput, OfferRequest, OrderInput, PayNewCardRequest,
    PaySavedCardRequest, RecurringInput, RegisterRequest, SecretString,
};
use oneclick_actors::fault::{Fault, Language};
use serde::{Deserialize, Serialize};

use super::customer::{CustomerRef, OptionalCustomerRef};
use super::{check_merchant_id, de, parse_language, Localized};

/// The order part of every gateway payment request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFields {
    #[serde(
        alias = "merchantId",
        alias = "Merchant_ID",
        deserialize_with = "de::merchant_id"
    )]
    pub merchant_id: i64,
    #[serde(
        alias = "orderNumber",
        alias = "ordernumber",
        deserialize_with = "de::text"
    )]
    pub order_number: String,
    /// `10.34`; a JSON number is taken when exact.
    #[serde(alias = "amount", alias = "orderAmount", deserialize_with = "de::text")]
    pub order_amount: String,
    #[serde(alias = "currency", alias = "orderCurrency")]
    pub order_currency: String,
    /// Present for One Click (R1); absent for a plain or recurring payment.
    #[serde(flatten)]
    pub customer: OptionalCustomerRef,
    /// Base64 HMAC-SHA256 over `merchant_id;order_number;order_amount;order_currency;customer_number` (R2).
    #[serde(default)]
    pub signature: Option<String>,
}

impl OrderFields {
    fn into_input(self) -> Result<OrderInput, Fault> {
        Ok(OrderInput {
            merchant_id: check_merchant_id(self.merchant_id)?,
            order_number: self.order_number,
            amount: self.order_amount,
            currency: self.order_currency,
            customer_number: self.customer.into_option(),
            signature: self.signature,
        })
    }
}

/// A new card typed on the payment page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardFields {
    #[serde(alias = "pan", alias = "cardNumber")]
    pub number: SecretString,
    #[serde(
        alias = "expiry_month",
        alias = "expireMonth",
        deserialize_with = "de::text"
    )]
    pub expire_month: String,
    #[serde(
        alias = "expiry_year",
        alias = "expireYear",
        deserialize_with = "de::text"
    )]
    pub expire_year: String,
    #[serde(alias = "cardholder", alias = "cardHolder")]
    pub holder: String,
    #[serde(default, alias = "cvc2", alias = "cvv")]
    pub cvc: Option<SecretString>,
}

impl From<CardFields> for NewCardInput {
    fn from(card: CardFields) -> Self {
        NewCardInput {
            number: card.number,
            expiry_month: card.expire_month,
            expiry_year: card.expire_year,
            holder: card.holder,
            cvc: card.cvc,
        }
    }
}

/// Recurring parameters (R3, R15), as received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurringFields {
    /// `1` starts an agreement.
    #[serde(
        default,
        alias = "recurringIndicator",
        deserialize_with = "de::opt_text"
    )]
    pub recurring_indicator: Option<String>,
    #[serde(
        default,
        alias = "recurringMinAmount",
        deserialize_with = "de::opt_text"
    )]
    pub recurring_min_amount: Option<String>,
    #[serde(
        default,
        alias = "recurringMaxAmount",
        deserialize_with = "de::opt_text"
    )]
    pub recurring_max_amount: Option<String>,
    /// Days between charges (the original's `recurringCount`).
    #[serde(
        default,
        alias = "recurringCount",
        alias = "recurringPeriod",
        alias = "recurring_count",
        deserialize_with = "de::opt_text"
    )]
    pub recurring_period: Option<String>,
    /// `DD.MM.YYYY`
    #[serde(default, alias = "recurringMaxDate", deserialize_with = "de::opt_text")]
    pub recurring_max_date: Option<String>,
}

impl From<RecurringFields> for RecurringInput {
    fn from(r: RecurringFields) -> Self {
        RecurringInput {
            indicator: r.recurring_indicator,
            min_amount: r.recurring_min_amount,
            max_amount: r.recurring_max_amount,
            period_days: r.recurring_period,
            max_date: r.recurring_max_date,
        }
    }
}

macro_rules! localized {
    ($($t:ty),*) => {$(
        impl Localized for $t {
            fn language(&self) -> Language {
                parse_language(self.language.as_deref()).unwrap_or_default()
            }
        }
    )*};
}

/// `<p>.v1.gw.offer`: what to offer on the payment page (R4, read-only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferBody {
    #[serde(flatten)]
    pub order: OrderFields,
    #[serde(default)]
    pub language: Option<String>,
}

impl OfferBody {
    /// `customer_number` is mandatory here: without it there is nothing to offer.
    pub fn into_request(self) -> Result<OfferRequest, Fault> {
        parse_language(self.language.as_deref())?;
        if self.order.customer.as_deref().is_none() {
            return Err(Fault::MissingField);
        }
        Ok(OfferRequest {
            order: self.order.into_input()?,
        })
    }
}

/// `<p>.v1.gw.pay`: pay with a new card; save it unless `save_card` is false (R4: absent = yes),
/// or start a recurring agreement (R15).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayBody {
    #[serde(flatten)]
    pub order: OrderFields,
    pub card: CardFields,
    #[serde(default, alias = "saveCard", deserialize_with = "de::opt_bool")]
    pub save_card: Option<bool>,
    #[serde(flatten)]
    pub recurring: RecurringFields,
    #[serde(default)]
    pub language: Option<String>,
}

impl PayBody {
    pub fn into_request(self) -> Result<PayNewCardRequest, Fault> {
        parse_language(self.language.as_deref())?;
        Ok(PayNewCardRequest {
            order: self.order.into_input()?,
            card: self.card.into(),
            save: self.save_card,
            recurring: self.recurring.into(),
        })
    }
}

/// `<p>.v1.gw.pay_saved`: pay with a saved card (+ CVC when the merchant needs it, R8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaySavedBody {
    #[serde(flatten)]
    pub order: OrderFields,
    pub token: String,
    #[serde(default, alias = "cvc2", alias = "cvv")]
    pub cvc: Option<SecretString>,
    #[serde(default)]
    pub language: Option<String>,
}

impl PaySavedBody {
    pub fn into_request(self) -> Result<PaySavedCardRequest, Fault> {
        parse_language(self.language.as_deref())?;
        Ok(PaySavedCardRequest {
            order: self.order.into_input()?,
            token: self.token,
            cvc: self.cvc,
        })
    }
}

/// `<p>.v1.gw.register`: registration transaction (R13): verify and save, no payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBody {
    #[serde(flatten)]
    pub order: OrderFields,
    pub card: CardFields,
    #[serde(default)]
    pub language: Option<String>,
}

impl RegisterBody {
    pub fn into_request(self) -> Result<RegisterRequest, Fault> {
        parse_language(self.language.as_deref())?;
        Ok(RegisterRequest {
            order: self.order.into_input()?,
            card: self.card.into(),
        })
    }
}

/// `<p>.v1.gw.delete_card`: the customer deletes a card on the payment page (R10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteCardBody {
    #[serde(
        alias = "merchantId",
        alias = "Merchant_ID",
        deserialize_with = "de::merchant_id"
    )]
    pub merchant_id: i64,
    #[serde(flatten)]
    pub customer: CustomerRef,
    pub token: String,
    /// R16: a repeat with the same id returns the first result.
    #[serde(default, alias = "commandId")]
    pub command_id: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

impl DeleteCardBody {
    pub fn into_request(self) -> Result<DeleteCardRequest, Fault> {
        parse_language(self.language.as_deref())?;
        Ok(DeleteCardRequest {
            merchant_id: check_merchant_id(self.merchant_id)?,
            customer_number: self.customer.into_string(),
            token: self.token,
            command_id: self.command_id,
            actor: AuditActor::gateway(),
        })
    }
}

localized!(
    OfferBody,
    PayBody,
    PaySavedBody,
    RegisterBody,
    DeleteCardBody
);

/// A card as shown (R9): masked number, brand, `MM.YYYY`, holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// `412362******0028`
    pub number: String,
    pub brand: String,
    pub expire: String,
    pub holder: String,
}

impl From<MaskedCard> for CardView {
    fn from(c: MaskedCard) -> Self {
        CardView {
            number: c.number,
            brand: c.brand,
            expire: c.expire,
            holder: c.holder,
        }
    }
}

/// A saved card the page may offer (R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferCardView {
    pub token: String,
    pub number: String,
    pub brand: String,
    pub expire: String,
    pub holder: String,
}

impl From<OfferCard> for OfferCardView {
    fn from(c: OfferCard) -> Self {
        OfferCardView {
            token: c.token,
            number: c.card.number,
            brand: c.card.brand,
            expire: c.card.expire,
            holder: c.card.holder,
        }
    }
}

/// Reply of `offer` (R4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferReply {
    pub status: CustomerStatus,
    /// Offer to save a new card ("yes" preselected).
    pub save_offer: bool,
    /// Paying with a saved card needs the CVC2 (R8).
    pub need_cvc: bool,
    /// Paying with a saved card is possible at all (R18 mode, R6 fraud).
    pub saved_card_payments: bool,
    /// Last used first.
    pub cards: Vec<OfferCardView>,
}

impl From<Offer> for OfferReply {
    fn from(o: Offer) -> Self {
        OfferReply {
            status: o.status,
            save_offer: o.save_offer,
            need_cvc: o.need_cvc,
            saved_card_payments: o.saved_card_payments,
            cards: o.cards.into_iter().map(OfferCardView::from).collect(),
        }
    }
}

/// Reply of `pay`, `pay_saved`, `register`, Token Pay and recurring charges; the same result is
/// returned unchanged for a repeat (R16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReply {
    pub merchant_id: i64,
    pub order_number: String,
    /// `purchase`, `registration`, `saved_card`, `token_pay`, `recurring_initial`, `recurring_charge`.
    pub kind: OrderKind,
    /// The original's order state (`Approved`, `Declined`, `In Process`, `Timeout`, …).
    pub order_state: OrderState,
    /// The original's response code (`AS000`, `AS100`, `AS105`, …).
    pub response_code: ResponseCode,
    pub message: String,
    pub order_amount: String,
    pub order_currency: String,
    pub card: Option<CardView>,
    /// The card used, or the card this payment saved.
    pub token: Option<String>,
    /// This payment saved (or updated, R11) the card.
    pub card_saved: bool,
}

impl From<PaymentResult> for PaymentReply {
    fn from(r: PaymentResult) -> Self {
        PaymentReply {
            merchant_id: r.merchant_id,
            order_number: r.order_number,
            kind: r.kind,
            order_state: r.order_state,
            response_code: r.response_code,
            message: r.message,
            order_amount: r.amount,
            order_currency: r.currency,
            card: r.card.map(CardView::from),
            token: r.token,
            card_saved: r.card_saved,
        }
    }
}

/// Reply of `delete_card` (and of the merchant's token removal): `{"message":"Token … is removed"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRemovedReply {
    pub message: String,
}

impl From<TokenRemoved> for TokenRemovedReply {
    fn from(r: TokenRemoved) -> Self {
        TokenRemovedReply { message: r.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_request;

    const PAN: &str = "4111111111111111";
    const CVC: &str = "737";

    fn pay_json() -> String {
        format!(
            r#"{{"merchantId":"452739","orderNumber":"A-1","amount":10.34,"currency":"RUB",
               "customerNumber":"1234","signature":"c2ln","language":"RU","unknown":{{"x":1}},
               "card":{{"number":"{PAN}","expire_month":12,"expire_year":"2030",
                        "holder":"IVAN IVANOV","cvc":"{CVC}"}},
               "save_card":"no","recurringCount":"30"}}"#
        )
    }

    #[test]
    fn debug_of_a_parsed_pay_request_shows_no_pan_and_no_cvc() -> Result<(), Fault> {
        let body: PayBody = parse_request(pay_json().as_bytes(), 65536)?;
        let wire = format!("{body:?} {body:#?}");
        let engine = body.into_request()?;
        let engine_debug = format!("{engine:?}");
        for text in [wire, engine_debug] {
            assert!(!text.contains(PAN), "{text}");
            assert!(!text.contains("41111111"), "{text}");
            assert!(!text.contains(&format!("\"{CVC}\"")), "{text}");
            assert!(text.contains("[REDACTED]"));
        }
        Ok(())
    }

    #[test]
    fn pay_accepts_the_original_spellings_and_maps_every_field() -> Result<(), Fault> {
        let body: PayBody = parse_request(pay_json().as_bytes(), 65536)?;
        assert_eq!(body.language(), Language::Ru);
        let req = body.into_request()?;
        assert_eq!(req.order.merchant_id, 452739);
        assert_eq!(req.order.order_number, "A-1");
        assert_eq!(req.order.amount, "10.34");
        assert_eq!(req.order.currency, "RUB");
        assert_eq!(req.order.customer_number.as_deref(), Some("1234"));
        assert_eq!(req.order.signature.as_deref(), Some("c2ln"));
        assert_eq!(req.card.number.expose(), PAN);
        assert_eq!(req.card.expiry_month, "12");
        assert_eq!(req.card.expiry_year, "2030");
        assert_eq!(req.card.holder, "IVAN IVANOV");
        assert_eq!(req.card.cvc.as_ref().map(SecretString::expose), Some(CVC));
        assert_eq!(req.save, Some(false));
        assert_eq!(req.recurring.period_days.as_deref(), Some("30"));
        assert!(req.recurring.indicator.is_none());
        Ok(())
    }

    #[test]
    fn absent_save_answer_stays_absent_for_the_engine_to_read_as_yes() -> Result<(), Fault> {
        let json = pay_json().replace(r#""save_card":"no","#, "");
        let req = parse_request::<PayBody>(json.as_bytes(), 65536)?.into_request()?;
        assert_eq!(req.save, None);
        Ok(())
    }

    #[test]
    fn card_number_as_a_json_number_is_malformed() {
        let json = pay_json().replace(&format!("\"{PAN}\""), PAN);
        assert_eq!(
            parse_request::<PayBody>(json.as_bytes(), 65536).err(),
            Some(Fault::MalformedRequest)
        );
    }

    #[test]
    fn offer_needs_a_customer_number_and_a_positive_merchant() -> Result<(), Fault> {
        let ok = br#"{"merchant_id":452739,"order_number":"1","amount":"1.00","currency":"RUB",
                      "customer_number":"c1","signature":"s"}"#;
        let req = parse_request::<OfferBody>(ok, 4096)?.into_request()?;
        assert_eq!(req.order.customer_number.as_deref(), Some("c1"));
        let no_customer = br#"{"merchant_id":1,"order_number":"1","amount":"1","currency":"RUB"}"#;
        assert_eq!(
            parse_request::<OfferBody>(no_customer, 4096)?
                .into_request()
                .err(),
            Some(Fault::MissingField)
        );
        let zero = br#"{"merchant_id":"0","order_number":"1","amount":"1","currency":"RUB","customer_number":"c"}"#;
        assert_eq!(
            parse_request::<OfferBody>(zero, 4096)?.into_request().err(),
            Some(Fault::UnknownMerchant)
        );
        let bad_language = br#"{"merchant_id":1,"order_number":"1","amount":"1","currency":"RUB","customer_number":"c","language":"DE"}"#;
        assert_eq!(
            parse_request::<OfferBody>(bad_language, 4096)?
                .into_request()
                .err(),
            Some(Fault::InvalidLanguage)
        );
        Ok(())
    }

    #[test]
    fn pay_saved_and_delete_card_map_to_the_engine() -> Result<(), Fault> {
        let json =
            br#"{"merchant_id":"7","order_number":"2","order_amount":"5.00","order_currency":"USD",
                        "customernumber":"c","signature":"s","token":"T","cvc":"123"}"#;
        let body = parse_request::<PaySavedBody>(json, 4096)?;
        assert!(!format!("{body:?}").contains("\"123\""));
        let req = body.into_request()?;
        assert_eq!(req.token, "T");
        assert_eq!(req.cvc.as_ref().map(SecretString::expose), Some("123"));
        let json = br#"{"merchant_id":7,"customerNumber":"c","token":"T","command_id":"k1"}"#;
        let req = parse_request::<DeleteCardBody>(json, 4096)?.into_request()?;
        assert_eq!(
            (
                req.merchant_id,
                req.customer_number.as_str(),
                req.token.as_str(),
                req.command_id.as_deref()
            ),
            (7, "c", "T", Some("k1"))
        );
        Ok(())
    }

    #[test]
    fn register_requires_the_card() {
        let json =
            br#"{"merchant_id":7,"order_number":"2","order_amount":"5.00","order_currency":"USD"}"#;
        assert_eq!(
            parse_request::<RegisterBody>(json, 4096).err(),
            Some(Fault::MissingField)
        );
    }

    #[test]
    fn replies_map_from_the_engine() -> Result<(), serde_json::Error> {
        let card = MaskedCard {
            number: "412362******0028".into(),
            brand: "VISA".into(),
            expire: "12.2030".into(),
            holder: "IVAN IVANOV".into(),
        };
        let offer = Offer {
            status: CustomerStatus::Member,
            save_offer: false,
            need_cvc: true,
            saved_card_payments: true,
            cards: vec![OfferCard {
                token: "T".into(),
                card: card.clone(),
            }],
        };
        let json = serde_json::to_value(OfferReply::from(offer))?;
        assert_eq!(
            json,
            serde_json::json!({"status":"member","save_offer":false,"need_cvc":true,
                "saved_card_payments":true,"cards":[{"token":"T","number":"412362******0028",
                "brand":"VISA","expire":"12.2030","holder":"IVAN IVANOV"}]})
        );
        let result = PaymentResult {
            merchant_id: 1,
            order_number: "o".into(),
            kind: OrderKind::Purchase,
            order_state: OrderState::InProcess,
            response_code: ResponseCode::AS300,
            message: "m".into(),
            amount: "1.00".into(),
            currency: "RUB".into(),
            card: Some(card),
            token: Some("T".into()),
            card_saved: true,
        };
        let json = serde_json::to_value(PaymentReply::from(result))?;
        assert_eq!(json["order_state"], "In Process");
        assert_eq!(json["response_code"], "AS300");
        assert_eq!(json["order_amount"], "1.00");
        assert_eq!(json["card"]["number"], "412362******0028");
        let removed = serde_json::to_string(&TokenRemovedReply::from(TokenRemoved::of("T-1")))?;
        assert_eq!(removed, r#"{"message":"Token T-1 is removed"}"#);
        Ok(())
    }
}
