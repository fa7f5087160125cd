//! The personal account's words in Russian and English, as the original offers both. Templates
//! read them as `t.<key>`; a test checks both languages have every key.

use std::collections::BTreeMap;

use oneclick_actors::fault::Language;

/// One line a word: `key | English | Russian`.
const TEXTS: &str = "\
title | Personal Account | Личный кабинет
oneclick_tab | One Click | One Click
settings | Settings | Настройки
sign_in | Sign in | Войти
sign_out | Sign out | Выйти
merchant_id | Merchant ID | Идентификатор предприятия
login | Login | Логин
password | Password | Пароль
code | One-time code (if enabled) | Одноразовый код (если включён)
code_for_change | One-time code | Одноразовый код
code_refused | Wrong or missing one-time code: nothing was changed. Enter a new code from your app. | Неверный или не указан одноразовый код: ничего не изменено. Введите новый код из приложения.
members | One Click members | Участники программы One Click
customer_number | CustomerNumber | CustomerNumber
status | Status | Статус
cards | Saved cards | Сохранённые карты
first_payment | First payment | Первый платёж
last_payment | Last payment | Последний платёж
payments | Successful payments | Успешных платежей
search | Search | Найти
next_page | Next page | Следующая страница
first_page | First page | Первая страница
total | Customers found | Найдено клиентов
none | No customers | Клиентов нет
card | Card | Карта
brand | Type | Тип
expire | Expiry | Срок действия
saved_at | Saved | Дата сохранения
last_used | Last successful payment | Последний успешный платёж
success_count | Successful payments | Успешных платежей
state | State | Состояние
delete_card | Delete card | Удалить карту
set_deny | Set Deny | Установить Deny
clear_deny | Clear Deny | Снять Deny
back | Back to the list | К списку
not_found | Customer not found | Клиент не найден
enabled | One Click enabled | One Click подключён
mode | Mode | Режим
need_cvc | CVC2 required for saved cards | CVC2 для сохранённых карт
threshold | Payments before a card is listed | Платежей до показа карты в списке
limits | Turnover limits per customer | Лимиты оборота клиента
day | Day | День
week | Week | Неделя
no_limit | none | нет
time_zone | Time zone of the limits | Часовой пояс лимитов
union | Union of customer numbers | Объединение номеров клиентов
mit_cof | MIT COF | MIT COF
yes | yes | да
no | no | нет
read_only | Read only: ask support to change these. | Только просмотр: для изменения обратитесь в клиентский отдел.
forbidden | The form expired: reload the page and try again. | Форма устарела: обновите страницу и повторите.
";

/// The lines of [`TEXTS`] as (key, English, Russian).
fn entries() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    TEXTS.lines().filter(|l| !l.trim().is_empty()).map(|line| {
        let mut parts = line.splitn(3, " | ");
        let key = parts.next().unwrap_or_default();
        let en = parts.next().unwrap_or_default();
        let ru = parts.next().unwrap_or_default();
        (key, en, ru)
    })
}

/// The words of `language`, by key.
pub fn texts(language: Language) -> BTreeMap<&'static str, &'static str> {
    entries()
        .map(|(k, en, ru)| (k, if language == Language::Ru { ru } else { en }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_and_said_in_both_languages() {
        let keys: std::collections::BTreeSet<_> = entries().map(|t| t.0).collect();
        assert_eq!(keys.len(), entries().count());
        for (key, en, ru) in entries() {
            assert!(!key.is_empty() && !en.is_empty() && !ru.is_empty(), "{key}");
            assert!(!ru.contains(" | "), "{key}: one line, three columns");
        }
        assert_eq!(texts(Language::Ru)["sign_in"], "Войти");
    }
}
