//! The stable fault-code table: every error that reaches a client maps to exactly one [`Fault`].
//!
//! On the wire a fault has the original service's shape
//! `{"fault":{"detail":"…","faultcode":N,"faultstring":M}}`: `faultcode` is the category (first
//! code), `faultstring` the specific fault (second code), `detail` a text in the requested language.
//! Codes are a public contract: never renumber one, only add. `docs/protocol.md` lists them all and
//! a test checks that list against [`Fault::ALL`].

use serde::{Deserialize, Serialize};

/// Language of fault details, as the original offers (`RU` or `EN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "RU", alias = "ru")]
    Ru,
    #[default]
    #[serde(rename = "EN", alias = "en")]
    En,
}

impl Language {
    /// Parses `RU`/`EN` (case-insensitive); anything else is `None`.
    pub fn parse(raw: &str) -> Option<Language> {
        match raw.to_ascii_uppercase().as_str() {
            "RU" => Some(Language::Ru),
            "EN" => Some(Language::En),
            _ => None,
        }
    }
}

macro_rules! faults {
    ($($name:ident = ($code:expr, $sub:expr, $en:expr, $ru:expr);)*) => {
        /// A client-visible fault. See the module header for the wire shape.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Fault { $($name,)* }

        impl Fault {
            /// Every fault, in table order (used to check the documentation).
            pub const ALL: &'static [Fault] = &[$(Fault::$name,)*];

            /// `(faultcode, faultstring)`.
            pub fn codes(self) -> (u32, u32) {
                match self { $(Fault::$name => ($code, $sub),)* }
            }

            /// The detail text in the given language.
            pub fn detail(self, language: Language) -> &'static str {
                match (self, language) {
                    $((Fault::$name, Language::En) => $en,
                      (Fault::$name, Language::Ru) => $ru,)*
                }
            }

            /// Stable snake-case name (for logs and metrics labels).
            pub fn name(self) -> &'static str {
                match self { $(Fault::$name => stringify!($name),)* }
            }
        }
    };
}

faults! {
    // 1: the request itself
    MalformedRequest = (1, 1, "Malformed request: not valid JSON or wrong field types", "Некорректный запрос: неверный JSON или типы полей");
    MissingField = (1, 2, "A mandatory field is missing", "Не передано обязательное поле");
    FieldTooLong = (1, 3, "A field exceeds its maximum length", "Превышена допустимая длина поля");
    RequestTooLarge = (1, 4, "Request body too large", "Слишком большой запрос");
    CommandSubjectMismatch = (1, 5, "The durable command does not match its subject (partition or kind)", "Команда не соответствует своей теме (раздел или тип)");
    // 2: who is asking
    UnknownMerchant = (2, 1, "Unknown merchant", "Неизвестное предприятие");
    AuthenticationFailed = (2, 2, "Wrong login or password", "Неверный логин или пароль");
    MerchantMismatch = (2, 3, "merchant_id of the body does not match the subject", "merchant_id в запросе не совпадает с темой");
    OneClickDisabled = (2, 4, "The merchant is not enabled for One Click", "Предприятие не подключено к программе One Click");
    LoginLocked = (2, 5, "Too many failed logins from this source: locked for a while or until the operator unlocks it", "Слишком много неудачных попыток входа с этого источника: вход заблокирован на время или до разблокировки оператором");
    LoginThrottled = (2, 6, "Too many login attempts from this source: retry later", "Слишком много попыток входа с этого источника: повторите позже");
    // 3: field validation
    InvalidCustomerNumber = (3, 1, "Invalid customer number", "Неверный номер клиента");
    InvalidOrderNumber = (3, 2, "Invalid order number", "Неверный номер заказа");
    InvalidAmount = (3, 3, "Invalid amount", "Неверная сумма");
    InvalidCurrency = (3, 4, "Invalid currency", "Неверная валюта");
    InvalidCardNumber = (3, 5, "Invalid card number", "Неверный номер карты");
    InvalidExpiry = (3, 6, "Invalid or past card expiry", "Неверный срок действия карты");
    InvalidCardholder = (3, 7, "Invalid cardholder name", "Неверное имя держателя карты");
    InvalidCvc = (3, 8, "Invalid CVC2", "Неверный CVC2");
    InvalidToken = (3, 9, "Invalid token format", "Неверный формат токена");
    InvalidSignature = (3, 10, "Missing or wrong signature", "Отсутствует или неверна подпись");
    RecurringWithCustomerNumber = (3, 11, "customer_number cannot be combined with recurring parameters", "customer_number нельзя передавать вместе с параметрами рекуррентных платежей");
    InvalidRecurringParameters = (3, 12, "Invalid recurring parameters", "Неверные параметры рекуррентных платежей");
    InvalidLanguage = (3, 13, "Invalid language (RU or EN)", "Неверный язык (RU или EN)");
    InvalidCommandId = (3, 14, "Invalid command_id", "Неверный command_id");
    InvalidTokenType = (3, 15, "Invalid token_type (5 for Token Pay)", "Неверный token_type (5 для Token Pay)");
    InvalidSettings = (3, 16, "Invalid merchant settings", "Неверные настройки предприятия");
    InvalidStatus = (3, 17, "Invalid customer status", "Неверный статус клиента");
    // 4: state of the customer, card, order or agreement
    TokenNotFound = (4, 1, "Token not found", "Токен не найден");
    ModeForbids = (4, 2, "The merchant's One Click mode does not allow this operation", "Режим One Click предприятия не допускает эту операцию");
    CustomerFraud = (4, 3, "Payments of this customer are refused", "Платежи этого клиента запрещены");
    IdempotencyConflict = (4, 4, "A command with this id was already received with different content", "Команда с этим идентификатором уже получена с другими данными");
    OrderNotFound = (4, 5, "Order not found", "Заказ не найден");
    AgreementNotFound = (4, 6, "Recurring agreement not found", "Рекуррентное соглашение не найдено");
    RecurringOutOfTerms = (4, 7, "The charge is outside the recurring agreement", "Платёж не соответствует рекуррентному соглашению");
    UnionCollision = (4, 8, "The merchants already use the same customer numbers", "У предприятий совпадают номера клиентов");
    CustomerNotFound = (4, 9, "Customer not found", "Клиент не найден");
    CvcRequired = (4, 10, "CVC2 is required for this merchant", "Для этого предприятия требуется CVC2");
    CardExpired = (4, 11, "The saved card has expired or is blocked", "Срок действия сохранённой карты истёк или она заблокирована");
    UnknownUnion = (4, 12, "Unknown union", "Неизвестное объединение");
    AlreadyExists = (4, 13, "Already exists", "Уже существует");
    // 9: oneclick itself
    Internal = (9, 1, "Internal error", "Внутренняя ошибка");
    Timeout = (9, 2, "The request deadline passed", "Истекло время обработки запроса");
    Unavailable = (9, 3, "Service temporarily unavailable", "Сервис временно недоступен");
    ShuttingDown = (9, 4, "The service is shutting down", "Сервис останавливается");
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (code, sub) = self.codes();
        write!(f, "{}/{} {}", code, sub, self.detail(Language::En))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fault_codes_are_unique() {
        let codes: HashSet<_> = Fault::ALL.iter().map(|f| f.codes()).collect();
        assert_eq!(codes.len(), Fault::ALL.len());
    }

    #[test]
    fn every_fault_has_both_languages() {
        for f in Fault::ALL {
            assert!(!f.detail(Language::En).is_empty());
            assert!(!f.detail(Language::Ru).is_empty());
            assert_ne!(f.detail(Language::En), f.detail(Language::Ru));
        }
    }
}
