//! PostgreSQL only: the group commit's common steps for a whole batch, one statement per step
//! kind, its rows passed as arrays (`unnest … WITH ORDINALITY`), an outcome per row instead of
//! a savepoint (issue 14: chosen over pipelining the per-row statements by the benchmark's
//! prototype, `oneclick-bench --batching`; docs/performance.md, "Set-based batches").
//!
//! Each statement does what its per-row twin in [`super::prepared`] does for every row at once,
//! with the same CTEs. The caller must not put two rows of one customer into one reservation
//! statement: a statement sees one snapshot, so the second row would not see the first row's
//! order in its turnover (the group commit keeps such a step for the per-row path).
//!
//! Plans: the planner estimates `unnest` at 100 rows, so on a small table it may scan the
//! customers and hash them rather than probe the index (seen at 1,000 customers); on a large
//! vault it probes. The turnover and card reads are correlated (`LATERAL`) and always use
//! their indexes.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Binary, Bool, Integer, Nullable, Text};
use diesel::QueryResult;

use super::prepared::NullableCardMeta;

/// Declares one set-based statement: a struct of bind arrays (each `field: Vec<T> as SqlType`,
/// bound as `SqlType[]` in declaration order), its output row type, and the SQL after the
/// arrays: the statement is `WITH i AS (SELECT * FROM unnest(<the arrays>` followed by `rest`.
/// Like `prepared!`, it has a static [`QueryId`], so each connection prepares it once.
macro_rules! set_statement {
    (
        $(#[$meta:meta])*
        pub struct $name:ident -> $ret:ty {
            $(pub $field:ident : $fty:ty as $st:ty),* $(,)?
        }
        rest: $rest:literal
    ) => {
        $(#[$meta])*
        // No `Debug`: the values may be card ciphertext, fingerprints and holder names.
        pub struct $name<'a> {
            $(pub $field: $fty),*
        }

        impl QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl Query for $name<'_> {
            type SqlType = $ret;
        }

        impl QueryFragment<diesel::pg::Pg> for $name<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
                out.push_sql("WITH i AS (SELECT * FROM unnest(");
                set_statement!(@binds out, self, $($field : $st),*);
                out.push_sql($rest);
                Ok(())
            }
        }

        impl<Conn> diesel::RunQueryDsl<Conn> for $name<'_> {}
    };
    (@binds $out:ident, $this:ident, $first:ident : $fst:ty $(, $field:ident : $st:ty)*) => {
        $out.push_bind_param::<Array<$fst>, _>(&$this.$first)?;
        $(
            $out.push_sql(", ");
            $out.push_bind_param::<Array<$st>, _>(&$this.$field)?;
        )*
    };
}

set_statement! {
    /// [`super::prepared::ReserveSavedCard`] for a whole batch: the same CTEs, every input an
    /// array, one output row per input row (`n`, its position), in input order. A customer that
    /// does not exist gives a row of NULLs after `n`.
    pub struct ReserveSavedCards -> (
        BigInt,
        (
            Nullable<BigInt>,
            Nullable<Bool>,
            NullableCardMeta,
            Nullable<Binary>,
            Nullable<Integer>,
            Nullable<Integer>,
            Nullable<BigInt>,
            Bool,
            BigInt,
            BigInt,
        ),
    ) {
        pub union_id: Vec<i64> as BigInt,
        pub customer_number: Vec<&'a str> as Text,
        pub token: Vec<&'a str> as Text,
        pub merchant_id: Vec<i64> as BigInt,
        pub order_number: Vec<&'a str> as Text,
        pub kind: Vec<&'a str> as Text,
        pub counts_for_limits: Vec<bool> as Bool,
        pub amount: Vec<i64> as BigInt,
        pub currency: Vec<&'a str> as Text,
        pub request_digest: Vec<&'a [u8]> as Binary,
        pub limited: Vec<bool> as Bool,
        pub since: Vec<i64> as BigInt,
        pub day_start: Vec<i64> as BigInt,
        pub week_start: Vec<i64> as BigInt,
        pub now_ms: Vec<i64> as BigInt,
    }
    rest: ") WITH ORDINALITY AS i(union_id, customer_number, token, merchant_id, order_number, \
             kind, counts_for_limits, amount, currency, request_digest, limited, since, \
             day_start, week_start, now_ms, n)), \
             s AS (SELECT i.n, cu.version FROM i JOIN customers cu \
             ON cu.union_id = i.union_id AND cu.customer_number = i.customer_number), \
             c AS (UPDATE customers cu SET version = cu.version + 1 FROM i \
             WHERE cu.union_id = i.union_id AND cu.customer_number = i.customer_number \
             RETURNING i.n, cu.id, cu.fraud, cu.version), \
             f AS (SELECT c.n, c.id, c.fraud, c.version = s.version + 1 AS fresh \
             FROM c JOIN s ON s.n = c.n), \
             k AS MATERIALIZED (SELECT c.n, cards.* FROM c JOIN i ON i.n = c.n JOIN cards \
             ON cards.token = i.token AND cards.customer_id = c.id \
             WHERE cards.state = 'active' AND cards.pan_ciphertext IS NOT NULL \
             AND cards.key_version IS NOT NULL FOR SHARE OF cards), \
             u AS (SELECT c.n, t.day, t.week FROM c JOIN i ON i.n = c.n, LATERAL (SELECT \
             COALESCE(SUM(amount) FILTER (WHERE created_at >= i.day_start), 0) AS day, \
             COALESCE(SUM(amount) FILTER (WHERE created_at >= i.week_start), 0) AS week \
             FROM orders WHERE orders.customer_id = c.id AND orders.currency = i.currency \
             AND orders.counts_for_limits AND orders.created_at >= i.since) t), \
             o AS (INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
             agreement_id, amount, currency, state, response_code, counts_for_limits, \
             request_digest, result_json, created_at, updated_at) \
             SELECT i.merchant_id, i.order_number, i.kind, f.id, k.id, NULL, i.amount, \
             i.currency, 'In Process', 'AS300', i.counts_for_limits, i.request_digest, NULL, \
             i.now_ms, i.now_ms FROM i JOIN f ON f.n = i.n JOIN k ON k.n = i.n \
             WHERE NOT f.fraud AND (f.fresh OR NOT i.limited) \
             ON CONFLICT DO NOTHING RETURNING id, merchant_id, order_number, customer_id) \
             SELECT i.n, c.id, c.fraud, k.id, k.token, k.customer_id, k.state, \
             k.brand, k.bin, k.last4, k.pan_length, k.expiry_month, k.expiry_year, k.holder, \
             k.saved_by_merchant, k.saved_at, k.last_used_at, k.success_count, k.deleted_at, \
             k.pan_ciphertext, k.key_version, k.aad_version, o.id, COALESCE(f.fresh, false), \
             CAST(LEAST(COALESCE(u.day, 0), 9223372036854775807) AS BIGINT), \
             CAST(LEAST(COALESCE(u.week, 0), 9223372036854775807) AS BIGINT) \
             FROM i LEFT JOIN c ON c.n = i.n LEFT JOIN f ON f.n = i.n \
             LEFT JOIN k ON k.n = i.n LEFT JOIN u ON u.n = i.n \
             LEFT JOIN o ON o.merchant_id = i.merchant_id AND o.order_number = i.order_number \
             AND o.customer_id = c.id ORDER BY i.n"
}

/// One row of [`ReserveSavedCards`]: its position (from 1), then what
/// [`super::prepared::ReserveSavedCard`] returns, NULL where no such customer.
pub type ReservedRow = (
    i64,
    (
        Option<i64>,
        Option<bool>,
        Option<super::rows::CardMetaRow>,
        Option<Vec<u8>>,
        Option<i32>,
        Option<i32>,
        Option<i64>,
        bool,
        i64,
        i64,
    ),
);

set_statement! {
    /// [`super::prepared::ReserveNewCard`] for a whole batch (new cards' payments and
    /// registrations of merchants without turnover limits): every input an array, one output row
    /// per input row that locked or created its customer, in input order: its position `n`, the
    /// customer, its `fraud` flag and the new order's id (NULL: not inserted). A row whose order
    /// number was taken before the statement locks and creates nothing and has no output row, as
    /// its per-row twin has none.
    ///
    /// The caller must not put two rows of one customer, or of one (merchant, order number), into
    /// one statement: the customer upsert may not touch a row twice, and an order inserted by one
    /// row must not be taken for another's. (The order is joined back on its customer as well.)
    pub struct ReserveNewCards -> (BigInt, BigInt, Bool, Nullable<BigInt>) {
        pub union_id: Vec<i64> as BigInt,
        pub customer_number: Vec<&'a str> as Text,
        pub merchant_id: Vec<i64> as BigInt,
        pub order_number: Vec<&'a str> as Text,
        pub kind: Vec<&'a str> as Text,
        pub counts_for_limits: Vec<bool> as Bool,
        pub amount: Vec<i64> as BigInt,
        pub currency: Vec<&'a str> as Text,
        pub request_digest: Vec<&'a [u8]> as Binary,
        pub now_ms: Vec<i64> as BigInt,
    }
    rest: ") WITH ORDINALITY AS i(union_id, customer_number, merchant_id, order_number, kind, \
             counts_for_limits, amount, currency, request_digest, now_ms, n)), \
             c AS (INSERT INTO customers (union_id, customer_number, deny, fraud, version, \
             created_at) SELECT i.union_id, i.customer_number, false, false, 1, i.now_ms \
             FROM i WHERE NOT EXISTS (SELECT 1 FROM orders WHERE orders.merchant_id = \
             i.merchant_id AND orders.order_number = i.order_number) \
             ON CONFLICT (union_id, customer_number) DO UPDATE SET \
             version = customers.version + 1 RETURNING id, union_id, customer_number, fraud), \
             ic AS (SELECT i.*, c.id AS customer_id, c.fraud FROM i JOIN c \
             ON c.union_id = i.union_id AND c.customer_number = i.customer_number), \
             o AS (INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
             agreement_id, amount, currency, state, response_code, counts_for_limits, \
             request_digest, result_json, created_at, updated_at) \
             SELECT merchant_id, order_number, kind, customer_id, NULL, NULL, amount, \
             currency, 'In Process', 'AS300', counts_for_limits, request_digest, NULL, \
             now_ms, now_ms FROM ic WHERE NOT fraud \
             ON CONFLICT DO NOTHING RETURNING id, merchant_id, order_number, customer_id) \
             SELECT ic.n, ic.customer_id, ic.fraud, o.id FROM ic LEFT JOIN o \
             ON o.merchant_id = ic.merchant_id AND o.order_number = ic.order_number \
             AND o.customer_id = ic.customer_id ORDER BY ic.n"
}

set_statement! {
    /// [`super::prepared::CompleteSavingCard`] for a whole batch (approved payments and
    /// registrations that save their new card): the same CTEs, every input an array. Output rows
    /// in input order (`n`, then the card's id): for each input row whose customer exists, one row
    /// per card kept (the saved one with `saved` true), or one row with NULL card columns; no row:
    /// no such customer. Each row also carries its input row's freshness, whether its order was
    /// claimed, and the customer's flags and version, as the per-row statement returns them.
    ///
    /// The caller must not put two rows of one customer into one statement (the lock and the card
    /// upsert may touch a row once). A row's card id is drawn from the sequence once
    /// (`MATERIALIZED`), as the per-row statement's is.
    pub struct CompleteSavingCards -> (
        BigInt,
        (
            Bool,
            Bool,
            Bool,
            Bool,
            BigInt,
            NullableCardMeta,
            Nullable<Bool>,
        ),
    ) {
        pub customer_id: Vec<i64> as BigInt,
        pub customer_number: Vec<&'a str> as Text,
        pub order_id: Vec<i64> as BigInt,
        pub state: Vec<&'a str> as Text,
        pub response_code: Vec<&'a str> as Text,
        pub keep_reservation: Vec<bool> as Bool,
        pub network_tx_id: Vec<Option<&'a str>> as Nullable<Text>,
        pub token: Vec<&'a str> as Text,
        pub brand: Vec<&'a str> as Text,
        pub bin: Vec<&'a str> as Text,
        pub last4: Vec<&'a str> as Text,
        pub pan_length: Vec<i32> as Integer,
        pub expiry_month: Vec<i32> as Integer,
        pub expiry_year: Vec<i32> as Integer,
        pub holder: Vec<&'a str> as Text,
        pub pan_ciphertext: Vec<&'a [u8]> as Binary,
        pub key_version: Vec<i32> as Integer,
        pub aad_version: Vec<i32> as Integer,
        pub fingerprint: Vec<&'a [u8]> as Binary,
        pub saved_by_merchant: Vec<i64> as BigInt,
        pub result_saved: Vec<&'a str> as Text,
        pub result_unsaved: Vec<&'a str> as Text,
        pub now_ms: Vec<i64> as BigInt,
    }
    rest: ") WITH ORDINALITY AS i(customer_id, customer_number, order_id, state, \
             response_code, keep_reservation, network_tx_id, token, brand, bin, last4, \
             pan_length, expiry_month, expiry_year, holder, pan_ciphertext, key_version, \
             aad_version, fingerprint, saved_by_merchant, result_saved, result_unsaved, \
             now_ms, n)), \
             s AS (SELECT i.n, cu.version FROM i JOIN customers cu ON cu.id = i.customer_id), \
             l AS (UPDATE customers cu SET version = cu.version + 1 FROM i \
             WHERE cu.id = i.customer_id \
             RETURNING i.n, cu.deny, cu.fraud, cu.customer_number, cu.version), \
             f AS (SELECT l.n, l.deny, l.fraud, l.version, l.version = s.version + 1 AS fresh, \
             (NOT deny AND NOT fraud) AND l.customer_number = i.customer_number AS saves \
             FROM l JOIN s ON s.n = l.n JOIN i ON i.n = l.n), \
             e AS (SELECT i.n, cards.id, cards.token FROM i JOIN cards \
             ON cards.customer_id = i.customer_id AND cards.fingerprint = i.fingerprint), \
             nn AS MATERIALIZED (SELECT f.n, COALESCE(e.id, \
             nextval(pg_get_serial_sequence('cards', 'id'))) AS id, \
             COALESCE(e.token, i.token) AS token FROM f JOIN i ON i.n = f.n \
             LEFT JOIN e ON e.n = f.n WHERE f.fresh AND f.saves), \
             c AS (UPDATE orders SET state = i.state, response_code = i.response_code, \
             counts_for_limits = orders.counts_for_limits AND i.keep_reservation, \
             card_id = nn.id, network_tx_id = i.network_tx_id, \
             result_json = CASE WHEN nn.id IS NOT NULL \
             THEN replace(i.result_saved, i.token, nn.token) ELSE i.result_unsaved END, \
             updated_at = i.now_ms \
             FROM i JOIN f ON f.n = i.n LEFT JOIN nn ON nn.n = i.n \
             WHERE orders.id = i.order_id AND orders.state = 'In Process' AND f.fresh \
             RETURNING i.n), \
             k AS (INSERT INTO cards (id, token, customer_id, state, brand, bin, last4, \
             pan_length, expiry_month, expiry_year, holder, pan_ciphertext, key_version, \
             aad_version, fingerprint, saved_by_merchant, saved_at, last_used_at, \
             success_count) SELECT nn.id, i.token, i.customer_id, 'active', i.brand, i.bin, \
             i.last4, i.pan_length, i.expiry_month, i.expiry_year, i.holder, \
             i.pan_ciphertext, i.key_version, i.aad_version, i.fingerprint, \
             i.saved_by_merchant, i.now_ms, i.now_ms, 1 FROM nn JOIN i ON i.n = nn.n \
             JOIN c ON c.n = nn.n \
             ON CONFLICT (customer_id, fingerprint) DO UPDATE SET \
             expiry_month = excluded.expiry_month, expiry_year = excluded.expiry_year, \
             holder = excluded.holder, state = 'active', \
             success_count = cards.success_count + 1, last_used_at = excluded.last_used_at \
             RETURNING *), \
             kept AS (SELECT k.*, true AS saved FROM k UNION ALL SELECT cards.*, false \
             FROM cards JOIN i ON cards.customer_id = i.customer_id \
             WHERE cards.state <> 'deleted' AND cards.id NOT IN (SELECT id FROM k)) \
             SELECT i.n, f.fresh, c.n IS NOT NULL, f.deny, f.fraud, f.version, \
             kept.id, kept.token, kept.customer_id, kept.state, kept.brand, kept.bin, \
             kept.last4, kept.pan_length, kept.expiry_month, kept.expiry_year, kept.holder, \
             kept.saved_by_merchant, kept.saved_at, kept.last_used_at, kept.success_count, \
             kept.deleted_at, kept.saved FROM i JOIN f ON f.n = i.n LEFT JOIN c ON c.n = i.n \
             LEFT JOIN kept ON kept.customer_id = i.customer_id ORDER BY i.n, kept.id"
}

/// One row of [`CompleteSavingCards`]: its input row's position (from 1), then fresh, claimed,
/// deny, fraud, version, a kept card (or NULL) and whether it is the one saved now.
pub type CompletedRow = (
    i64,
    (
        bool,
        bool,
        bool,
        bool,
        i64,
        Option<super::rows::CardMetaRow>,
        Option<bool>,
    ),
);

set_statement! {
    /// [`super::prepared::ClaimOrderCountingCard`] for a whole batch: returns the ids of the orders
    /// claimed (an order not `In Process` any more is left alone and missing from the answer).
    pub struct ClaimOrdersCountingCards -> BigInt {
        pub id: Vec<i64> as BigInt,
        pub state: Vec<&'a str> as Text,
        pub response_code: Vec<&'a str> as Text,
        pub keep_reservation: Vec<bool> as Bool,
        pub card_id: Vec<Option<i64>> as Nullable<BigInt>,
        pub network_tx_id: Vec<Option<&'a str>> as Nullable<Text>,
        pub result_json: Vec<Option<&'a str>> as Nullable<Text>,
        pub count_card: Vec<bool> as Bool,
        pub now_ms: Vec<i64> as BigInt,
    }
    rest: ") AS i(id, state, response_code, keep_reservation, card_id, network_tx_id, \
             result_json, count_card, now_ms)), \
             claimed AS (UPDATE orders SET state = i.state, response_code = i.response_code, \
             counts_for_limits = orders.counts_for_limits AND i.keep_reservation, \
             card_id = i.card_id, network_tx_id = i.network_tx_id, result_json = i.result_json, \
             updated_at = i.now_ms \
             FROM i WHERE orders.id = i.id AND orders.state = 'In Process' \
             RETURNING orders.id, orders.card_id, i.count_card, i.now_ms), \
             counted AS (UPDATE cards SET success_count = success_count + 1, \
             last_used_at = claimed.now_ms \
             FROM claimed WHERE cards.id = claimed.card_id AND claimed.count_card \
             RETURNING cards.id) SELECT id FROM claimed"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardState, OrderState, ResponseCode};

    fn sql<T: QueryFragment<diesel::pg::Pg>>(statement: &T) -> String {
        diesel::debug_query::<diesel::pg::Pg, _>(statement).to_string()
    }

    /// The set-based statements spell states and codes as literals, as their per-row twins do:
    /// they must be the domain's stored spellings. The claim touches only orders still in
    /// process, and counts a card only for a row that asks for it.
    #[test]
    fn set_based_statements_use_the_domains_stored_spellings() {
        let in_process = format!("'{}'", OrderState::InProcess.as_str());
        let reserve = ReserveSavedCards {
            union_id: vec![1],
            customer_number: vec!["c"],
            token: vec!["t"],
            merchant_id: vec![1],
            order_number: vec!["o"],
            kind: vec!["saved_card"],
            counts_for_limits: vec![true],
            amount: vec![1],
            currency: vec!["RUB"],
            request_digest: vec![&[][..]],
            limited: vec![true],
            since: vec![0],
            day_start: vec![0],
            week_start: vec![0],
            now_ms: vec![0],
        };
        let text = sql(&reserve);
        assert!(text.contains(&in_process), "{text}");
        assert!(
            text.contains(&format!("'{}'", ResponseCode::AS300.as_str())),
            "{text}"
        );
        assert!(
            text.contains(&format!("cards.state = '{}'", CardState::Active.as_str())),
            "{text}"
        );
        assert!(text.contains("(f.fresh OR NOT i.limited)"), "{text}");
        // A row's order is its own customer's, never another row's under the same number.
        assert!(text.contains("AND o.customer_id = c.id"), "{text}");
        let new_cards = ReserveNewCards {
            union_id: vec![1],
            customer_number: vec!["c"],
            merchant_id: vec![1],
            order_number: vec!["o"],
            kind: vec!["registration"],
            counts_for_limits: vec![false],
            amount: vec![0],
            currency: vec!["RUB"],
            request_digest: vec![&[][..]],
            now_ms: vec![0],
        };
        let text = sql(&new_cards);
        assert!(text.contains(&in_process), "{text}");
        assert!(
            text.contains(&format!("'{}'", ResponseCode::AS300.as_str())),
            "{text}"
        );
        assert!(text.contains("FROM ic WHERE NOT fraud"), "{text}");
        assert!(
            text.contains("AND o.customer_id = ic.customer_id"),
            "{text}"
        );
        // A card is saved only for a locked customer the save rule accepts (R6), and its id is
        // drawn from the sequence once per row.
        let savings = CompleteSavingCards {
            customer_id: vec![1],
            customer_number: vec!["c"],
            order_id: vec![1],
            state: vec!["Approved"],
            response_code: vec!["AS000"],
            keep_reservation: vec![true],
            network_tx_id: vec![None],
            token: vec!["t"],
            brand: vec!["VISA"],
            bin: vec!["411111"],
            last4: vec!["1111"],
            pan_length: vec![16],
            expiry_month: vec![12],
            expiry_year: vec![2030],
            holder: vec!["h"],
            pan_ciphertext: vec![&[][..]],
            key_version: vec![1],
            aad_version: vec![1],
            fingerprint: vec![&[][..]],
            saved_by_merchant: vec![1],
            result_saved: vec!["{}"],
            result_unsaved: vec!["{}"],
            now_ms: vec![0],
        };
        let text = sql(&savings);
        let rule = crate::domain::status::ACCEPTS_SAVE_OFFERS_SQL;
        assert!(text.contains(&format!("({rule})")), "{text}");
        assert!(text.contains("nn AS MATERIALIZED"), "{text}");
        assert!(
            text.contains(&format!("orders.state = {in_process} AND f.fresh")),
            "{text}"
        );
        assert!(
            text.contains(&format!("'{}'", CardState::Active.as_str())),
            "{text}"
        );
        let claim = ClaimOrdersCountingCards {
            id: vec![1],
            state: vec!["Approved"],
            response_code: vec!["AS000"],
            keep_reservation: vec![true],
            card_id: vec![None],
            network_tx_id: vec![None],
            result_json: vec![None],
            count_card: vec![false],
            now_ms: vec![0],
        };
        let text = sql(&claim);
        assert!(
            text.contains(&format!("orders.state = {in_process}")),
            "{text}"
        );
        assert!(text.contains("AND claimed.count_card"), "{text}");
    }
}
