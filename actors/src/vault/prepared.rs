//! The payment path's writes as statements the database prepares once per connection.
//!
//! Diesel never caches an `UPDATE`, a single-row `INSERT` or an `ON CONFLICT` clause as a prepared
//! statement (its statement cache calls them "unsafe to cache": the SQL can vary with the values),
//! so written with its query builder each of them is parsed and planned by PostgreSQL on every
//! execution, and its SQL text rebuilt by Diesel. Measured with pgbench on the development
//! machine, a payment's transaction ran 1.5k/s as simple statements and 2.3k/s prepared.
//!
//! Each statement here is a type with fixed SQL and typed bind parameters. It has a static
//! [`QueryId`], so Diesel's statement cache keys it by type: prepared on first use, then only
//! bound and executed. The SQL runs unchanged on PostgreSQL and SQLite (placeholders come from
//! the backend: `$1` / `?`); the benchmark's database baseline uses the same types.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text};
use diesel::QueryResult;

/// Declares one prepared statement: a struct with its bind values, then its SQL as literal pieces
/// with `{field: SqlType}` where each bind goes.
macro_rules! prepared {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? $(-> $ret:ty)? {
            $($field:ident : $fty:ty),* $(,)?
        }
        sql: $($piece:literal $({ $bind:ident : $st:ty })?)*
    ) => {
        $(#[$meta])*
        // No `Debug`: the values may be card ciphertext, fingerprints and holder names.
        #[derive(Clone, Copy)]
        pub struct $name $(<$lt>)? {
            $(pub $field: $fty),*
        }

        impl $(<$lt>)? QueryId for $name $(<$lt>)? {
            type QueryId = prepared!(@static $name $($lt)?);
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        prepared!(@fragment diesel::pg::Pg, $name $($lt)?, $($piece $({ $bind : $st })?)*);
        prepared!(@fragment diesel::sqlite::Sqlite, $name $($lt)?, $($piece $({ $bind : $st })?)*);

        prepared!(@query $name [$($lt)?] $($ret)?);

        impl<$($lt,)? Conn> diesel::RunQueryDsl<Conn> for $name $(<$lt>)? {}
    };
    (@query $name:ident [$($lt:lifetime)?] $ret:ty) => {
        impl $(<$lt>)? Query for $name $(<$lt>)? {
            type SqlType = $ret;
        }
    };
    (@query $name:ident [$($lt:lifetime)?]) => {};
    (@static $name:ident $lt:lifetime) => { $name<'static> };
    (@static $name:ident) => { $name };
    // One impl per backend (the same SQL; the backend writes its own placeholders).
    (@fragment $db:ty, $name:ident $($lt:lifetime)?, $($piece:literal $({ $bind:ident : $st:ty })?)*) => {
        impl $(<$lt>)? QueryFragment<$db> for $name $(<$lt>)? {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $db>) -> QueryResult<()> {
                $(
                    out.push_sql($piece);
                    $( out.push_bind_param::<$st, _>(&self.$bind)?; )?
                )*
                Ok(())
            }
        }
    };
}

prepared! {
    /// The customer's write lock (see `customers::lock_customer`): bump its version, return its
    /// id and `fraud` flag as committed.
    pub struct BumpCustomer<'a> -> (BigInt, Bool) {
        union_id: i64,
        customer_number: &'a str,
    }
    sql: "UPDATE customers SET version = version + 1 WHERE union_id = " {union_id: BigInt}
        " AND customer_number = " {customer_number: Text}
        " RETURNING id, fraud"
}

/// The SQL types of [`super::rows::CardMetaRow`], in its field order; NULL as a whole when a
/// statement finds no such card.
pub(crate) type NullableCardMeta = Nullable<(
    BigInt,
    Text,
    BigInt,
    Text,
    Text,
    Text,
    Text,
    Integer,
    Integer,
    Integer,
    Text,
    BigInt,
    BigInt,
    Nullable<BigInt>,
    BigInt,
    Nullable<BigInt>,
)>;

prepared! {
    /// PostgreSQL only: [`BumpCustomer`] and the read of the customer's active card `token` in
    /// one statement (one round trip less per saved-card payment). No row: no such customer.
    /// The card columns are NULL when the customer has no such active card.
    ///
    /// The card is read `FOR SHARE`: the statement's snapshot was taken before it waited for
    /// the customer's lock, and a card blocked or deleted by the transaction it waited for would
    /// still look active in that snapshot. Locking the row makes PostgreSQL re-read its latest
    /// committed version and test `state = 'active'` again (READ COMMITTED's re-check), which
    /// is what a separate statement after the lock would have seen.
    pub struct BumpCustomerReadCard<'a> -> (
        BigInt,
        Bool,
        NullableCardMeta,
        Nullable<Binary>,
        Nullable<Integer>,
        Nullable<Integer>,
    ) {
        union_id: i64,
        customer_number: &'a str,
        token: &'a str,
    }
    sql: "WITH c AS (UPDATE customers SET version = version + 1 WHERE union_id = "
        {union_id: BigInt} " AND customer_number = " {customer_number: Text}
        " RETURNING id, fraud) SELECT c.id, c.fraud, k.id, k.token, k.customer_id, k.state, \
         k.brand, k.bin, k.last4, k.pan_length, k.expiry_month, k.expiry_year, k.holder, \
         k.saved_by_merchant, k.saved_at, k.last_used_at, k.success_count, k.deleted_at, \
         k.pan_ciphertext, k.key_version, k.aad_version FROM c LEFT JOIN LATERAL (SELECT * FROM cards \
         WHERE cards.token = " {token: Text} " AND cards.customer_id = c.id \
         AND cards.state = 'active' FOR SHARE) k ON true"
}

prepared! {
    /// SQLite: takes the write lock at the start of a write transaction (see
    /// `connection::lock_for_writing`). A prepared statement, planned once per connection: run
    /// as text it was parsed at every transaction of the writer.
    pub struct LockForWriting {}
    sql: "UPDATE unions SET id = id WHERE 0"
}

prepared! {
    /// SQLite: the savepoint of a batch step (`group_commit::exec_batch`), planned once per
    /// connection (as text, two parses per step).
    pub struct SetStepSavepoint {}
    sql: "SAVEPOINT step"
}

prepared! {
    /// SQLite: releases [`SetStepSavepoint`] before the next step's.
    pub struct ReleaseStepSavepoint {}
    sql: "RELEASE SAVEPOINT step"
}

prepared! {
    /// SQLite: undoes a failed step to [`SetStepSavepoint`].
    pub struct RollbackToStepSavepoint {}
    sql: "ROLLBACK TO SAVEPOINT step"
}

prepared! {
    /// SQLite's read of the customer's active card `token`, after [`BumpCustomer`] took the
    /// lock (one writer: nothing changes in between). No row: no such active card.
    ///
    /// A statement of fixed SQL, without `LIMIT` (`token` is unique). Written with Diesel's
    /// `.first()` (a bound `LIMIT ?`) it was re-prepared by SQLite at every new binding, which
    /// was every saved-card payment of the writer: counted with a probe on `sqlite3Reprepare`
    /// (docs/performance.md). Test
    /// `the_sqlite_card_read_has_no_bound_limit_and_reads_the_active_card_only`.
    pub struct ReadActiveCard<'a> -> (
        NullableCardMeta,
        Nullable<Binary>,
        Nullable<Integer>,
        Nullable<Integer>,
    ) {
        token: &'a str,
        customer_id: i64,
    }
    sql: "SELECT id, token, customer_id, state, brand, bin, last4, pan_length, expiry_month, \
         expiry_year, holder, saved_by_merchant, saved_at, last_used_at, success_count, \
         deleted_at, pan_ciphertext, key_version, aad_version FROM cards WHERE token = "
        {token: Text} " AND customer_id = " {customer_id: BigInt} " AND state = 'active'"
}

prepared! {
    /// PostgreSQL only: the whole reservation of a saved-card payment of an existing customer,
    /// in one statement: [`BumpCustomerReadCard`], the customer's turnover in the limits'
    /// windows, and, when the customer is not flagged, the card is usable and the turnover was
    /// read fresh, the order as [`InsertOrder`] would insert it (`In Process`, counting when
    /// `counts_for_limits`; nothing when the order number exists). The limit itself is checked
    /// by the caller (`domain::limits::check`), which declines an order over it with
    /// [`DeclineOverLimit`].
    ///
    /// **Fresh.** The statement's snapshot was taken before it waited for the customer's lock:
    /// orders committed by the transaction it waited for are not in it, and rows that were not
    /// there cannot be re-checked. Every reservation bumps the customer's `version` under the
    /// lock, so the version the lock returns (the latest committed, plus this bump) is the
    /// snapshot's plus one exactly when no reservation committed between the snapshot and the
    /// lock. Otherwise (`fresh` false) nothing is inserted and the caller takes the general path,
    /// whose turnover read follows the lock. Without limits (`since` in the far future) the
    /// turnover is not needed and the order is inserted either way.
    ///
    /// Returns the customer, its flag, the card (NULL: no such usable card), the new order's id
    /// (NULL: not inserted), whether the snapshot was fresh, and the turnover since `day_start`
    /// and since `week_start` (clamped to `i64::MAX`). No row: no such customer.
    pub struct ReserveSavedCard<'a> -> (
        BigInt,
        Bool,
        NullableCardMeta,
        Nullable<Binary>,
        Nullable<Integer>,
        Nullable<Integer>,
        Nullable<BigInt>,
        Bool,
        BigInt,
        BigInt,
    ) {
        union_id: i64,
        customer_number: &'a str,
        token: &'a str,
        merchant_id: i64,
        order_number: &'a str,
        kind: &'a str,
        counts_for_limits: bool,
        amount: i64,
        currency: &'a str,
        request_digest: &'a [u8],
        now_ms: i64,
        limited: bool,
        since: i64,
        day_start: i64,
        week_start: i64,
    }
    sql: "WITH s AS (SELECT version FROM customers WHERE union_id = " {union_id: BigInt}
        " AND customer_number = " {customer_number: Text} "), \
         c AS (UPDATE customers SET version = version + 1 WHERE union_id = "
        {union_id: BigInt} " AND customer_number = " {customer_number: Text}
        " RETURNING id, fraud, version), \
         f AS (SELECT c.id, c.fraud, c.version = s.version + 1 AS fresh FROM c, s), \
         k AS MATERIALIZED (SELECT cards.* FROM c, cards WHERE cards.token = " {token: Text}
        " AND cards.customer_id = c.id AND cards.state = 'active' \
         AND cards.pan_ciphertext IS NOT NULL AND cards.key_version IS NOT NULL \
         FOR SHARE OF cards), \
         u AS (SELECT COALESCE(SUM(amount) FILTER (WHERE created_at >= " {day_start: BigInt}
        "), 0) AS day, COALESCE(SUM(amount) FILTER (WHERE created_at >= " {week_start: BigInt}
        "), 0) AS week FROM orders, c WHERE orders.customer_id = c.id AND orders.currency = "
        {currency: Text} " AND orders.counts_for_limits AND orders.created_at >= " {since: BigInt}
        "), \
         o AS (INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
         agreement_id, amount, currency, state, response_code, counts_for_limits, \
         request_digest, result_json, created_at, updated_at) SELECT "
        {merchant_id: BigInt} ", " {order_number: Text} ", " {kind: Text} ", f.id, k.id, NULL, "
        {amount: BigInt} ", " {currency: Text} ", 'In Process', 'AS300', "
        {counts_for_limits: Bool} ", "
        {request_digest: Binary} ", NULL, " {now_ms: BigInt} ", " {now_ms: BigInt}
        " FROM f, k WHERE NOT f.fraud AND (f.fresh OR NOT " {limited: Bool} ") \
         ON CONFLICT DO NOTHING RETURNING id) \
         SELECT c.id, c.fraud, k.id, k.token, k.customer_id, k.state, \
         k.brand, k.bin, k.last4, k.pan_length, k.expiry_month, k.expiry_year, k.holder, \
         k.saved_by_merchant, k.saved_at, k.last_used_at, k.success_count, k.deleted_at, \
         k.pan_ciphertext, k.key_version, k.aad_version, (SELECT id FROM o), \
         COALESCE((SELECT fresh FROM f), false), \
         CAST(LEAST((SELECT day FROM u), 9223372036854775807) AS BIGINT), \
         CAST(LEAST((SELECT week FROM u), 9223372036854775807) AS BIGINT) \
         FROM c LEFT JOIN k ON true"
}

prepared! {
    /// An order [`ReserveSavedCard`] inserted `In Process` that its caller found over a turnover
    /// limit: declined with the limit's code, counting for nothing (R12), its reply stored.
    pub struct DeclineOverLimit<'a> {
        id: i64,
        response_code: &'a str,
        result_json: &'a str,
        now_ms: i64,
    }
    sql: "UPDATE orders SET state = 'Declined', response_code = " {response_code: Text}
        ", counts_for_limits = false, result_json = " {result_json: Text} ", updated_at = "
        {now_ms: BigInt} " WHERE id = " {id: BigInt} " AND state = 'In Process'"
}

prepared! {
    /// PostgreSQL only: the whole reservation of a new card's payment or registration for a
    /// customer of a merchant without turnover limits, in one statement: the customer's lock
    /// ([`BumpCustomer`] as the upsert's `DO UPDATE`), the customer created as
    /// [`InsertCustomer`] would if it is new, then, unless it is flagged, the order as
    /// [`InsertOrder`] inserts it (`In Process`; nothing when the order number exists).
    ///
    /// Nothing is locked or created when the order number is taken already (a repeat of an
    /// order that names a new customer number must not create it): no row. Otherwise returns
    /// the customer, its flag and the new order's id (NULL: not inserted, a concurrent twin
    /// committed it first). The flag is the locked row's latest committed value.
    pub struct ReserveNewCard<'a> -> (BigInt, Bool, Nullable<BigInt>) {
        union_id: i64,
        customer_number: &'a str,
        merchant_id: i64,
        order_number: &'a str,
        kind: &'a str,
        counts_for_limits: bool,
        amount: i64,
        currency: &'a str,
        request_digest: &'a [u8],
        now_ms: i64,
    }
    sql: "WITH c AS (INSERT INTO customers (union_id, customer_number, deny, fraud, version, \
         created_at) SELECT " {union_id: BigInt} ", " {customer_number: Text} ", false, false, 1, "
        {now_ms: BigInt} " WHERE NOT EXISTS (SELECT 1 FROM orders WHERE merchant_id = "
        {merchant_id: BigInt} " AND order_number = " {order_number: Text} ") \
         ON CONFLICT (union_id, customer_number) DO UPDATE SET version = customers.version + 1 \
         RETURNING id, fraud), \
         o AS (INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
         agreement_id, amount, currency, state, response_code, counts_for_limits, \
         request_digest, result_json, created_at, updated_at) SELECT "
        {merchant_id: BigInt} ", " {order_number: Text} ", " {kind: Text} ", c.id, NULL, NULL, "
        {amount: BigInt} ", " {currency: Text} ", 'In Process', 'AS300', "
        {counts_for_limits: Bool} ", "
        {request_digest: Binary} ", NULL, " {now_ms: BigInt} ", " {now_ms: BigInt}
        " FROM c WHERE NOT c.fraud ON CONFLICT DO NOTHING RETURNING id) \
         SELECT c.id, c.fraud, (SELECT id FROM o) FROM c"
}

prepared! {
    /// The same lock by id; returns the customer's `deny` and `fraud` flags as committed (R6)
    /// and its number (what a card saved under the lock is bound to).
    pub struct BumpCustomerId -> (Bool, Bool, Text) {
        id: i64,
    }
    sql: "UPDATE customers SET version = version + 1 WHERE id = " {id: BigInt}
          " RETURNING deny, fraud, customer_number"
}

prepared! {
    /// A new customer, returned as locked (a concurrent creator's row wins: nothing inserted,
    /// nothing returned).
    pub struct InsertCustomer<'a> -> (BigInt, Bool) {
        union_id: i64,
        customer_number: &'a str,
        now_ms: i64,
    }
    sql: "INSERT INTO customers (union_id, customer_number, deny, fraud, version, created_at) \
          VALUES (" {union_id: BigInt} ", " {customer_number: Text} ", false, false, 1, "
          {now_ms: BigInt} ") ON CONFLICT DO NOTHING RETURNING id, fraud"
}

prepared! {
    /// A new order; nothing is inserted when (merchant, order number) exists (R16), and then no
    /// id is returned.
    pub struct InsertOrder<'a> -> BigInt {
        merchant_id: i64,
        order_number: &'a str,
        kind: &'a str,
        customer_id: Option<i64>,
        card_id: Option<i64>,
        agreement_id: Option<i64>,
        amount: i64,
        currency: &'a str,
        state: &'a str,
        response_code: &'a str,
        counts_for_limits: bool,
        request_digest: &'a [u8],
        result_json: Option<&'a str>,
        now_ms: i64,
    }
    sql: "INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
          agreement_id, amount, currency, state, response_code, counts_for_limits, \
          request_digest, result_json, created_at, updated_at) VALUES ("
          {merchant_id: BigInt} ", " {order_number: Text} ", " {kind: Text} ", "
          {customer_id: Nullable<BigInt>} ", " {card_id: Nullable<BigInt>} ", "
          {agreement_id: Nullable<BigInt>} ", " {amount: BigInt} ", " {currency: Text} ", "
          {state: Text} ", " {response_code: Text} ", " {counts_for_limits: Bool} ", "
          {request_digest: Binary} ", " {result_json: Nullable<Text>} ", " {now_ms: BigInt} ", "
          {now_ms: BigInt} ") ON CONFLICT DO NOTHING RETURNING id"
}

prepared! {
    /// Completes an order still `In Process` (0 rows: completed before, apply nothing). The
    /// order keeps counting toward the turnover limits (R12) what its reservation counted, unless
    /// `keep_reservation` is false (a decline releases it).
    pub struct ClaimOrder<'a> {
        id: i64,
        state: &'a str,
        response_code: &'a str,
        keep_reservation: bool,
        card_id: Option<i64>,
        network_tx_id: Option<&'a str>,
        result_json: Option<&'a str>,
        now_ms: i64,
    }
    sql: "UPDATE orders SET state = " {state: Text} ", response_code = " {response_code: Text}
        ", counts_for_limits = counts_for_limits AND " {keep_reservation: Bool} ", card_id = " {card_id: Nullable<BigInt>}
        ", network_tx_id = " {network_tx_id: Nullable<Text>}
        ", result_json = " {result_json: Nullable<Text>} ", updated_at = " {now_ms: BigInt}
        " WHERE id = " {id: BigInt} " AND state = 'In Process'"
}

prepared! {
    /// PostgreSQL only: the completion of an approved payment or registration that saves its new
    /// card (R5, R11), in one statement instead of a transaction of eight: the customer's lock
    /// ([`BumpCustomerId`]), the card saved as [`UpsertCard`] saves it when the customer, as
    /// committed, accepts saves (R6: `domain::status::ACCEPTS_SAVE_OFFERS_SQL`) and is the
    /// customer the card was sealed for, the order claimed as [`ClaimOrder`] claims it with its
    /// final reply, and the customer's cards as the snapshot holds them.
    ///
    /// The reply is `result_unsaved`, or, with the card saved, `result_saved` (sealed under
    /// `token`) where `token` is replaced by the saved card's own: the same number saved before
    /// keeps its token (R11). The card is saved only with the claim: its id is taken from the
    /// sequence (or is the same number's card) before the order, which names it, is claimed.
    ///
    /// **Fresh.** As for [`ReserveSavedCard`]: the statement's snapshot predates its wait for the
    /// lock, and a completion of the same order (a retry) or a save of the same number by another
    /// process may have committed in between; the customer's version tells. Only when it is
    /// fresh and the order is still `In Process` (as its latest version says: the claim's own
    /// re-check) does the statement write the claim, and the card only with the claim; otherwise
    /// it writes nothing but the version bump (and may spend a number of the cards' sequence)
    /// and the caller takes the general path. One row per card kept (`state <> 'deleted'`; the saved one with `saved` true), or one
    /// row with NULL card columns; no row: no such customer.
    pub struct CompleteSavingCard<'a> -> (
        Bool,
        BigInt,
        Bool,
        Bool,
        BigInt,
        NullableCardMeta,
        Nullable<Bool>,
    ) {
        customer_id: i64,
        customer_number: &'a str,
        order_id: i64,
        state: &'a str,
        response_code: &'a str,
        keep_reservation: bool,
        network_tx_id: Option<&'a str>,
        token: &'a str,
        brand: &'a str,
        bin: &'a str,
        last4: &'a str,
        pan_length: i32,
        expiry_month: i32,
        expiry_year: i32,
        holder: &'a str,
        pan_ciphertext: &'a [u8],
        key_version: i32,
        aad_version: i32,
        fingerprint: &'a [u8],
        saved_by_merchant: i64,
        result_saved: &'a str,
        result_unsaved: &'a str,
        now_ms: i64,
    }
    sql: "WITH s AS (SELECT version FROM customers WHERE id = " {customer_id: BigInt} "), \
         l AS (UPDATE customers SET version = version + 1 WHERE id = " {customer_id: BigInt}
        " RETURNING deny, fraud, customer_number, version), \
         f AS (SELECT l.deny, l.fraud, l.version, l.version = s.version + 1 AS fresh, \
         (NOT deny AND NOT fraud) AND l.customer_number = " {customer_number: Text}
        " AS saves FROM l, s), \
         e AS (SELECT id, token FROM cards WHERE customer_id = " {customer_id: BigInt}
        " AND fingerprint = " {fingerprint: Binary} "), \
         n AS (SELECT COALESCE((SELECT id FROM e), nextval(pg_get_serial_sequence('cards', 'id'))) \
         AS id, COALESCE((SELECT token FROM e), " {token: Text} ") AS token FROM f \
         WHERE f.fresh AND f.saves), \
         c AS (UPDATE orders SET state = " {state: Text} ", response_code = "
        {response_code: Text} ", counts_for_limits = counts_for_limits AND "
        {keep_reservation: Bool} ", card_id = (SELECT id FROM n), network_tx_id = "
        {network_tx_id: Nullable<Text>} ", result_json = CASE WHEN EXISTS (SELECT 1 FROM n) \
         THEN replace(" {result_saved: Text} ", " {token: Text} ", (SELECT token FROM n)) ELSE "
        {result_unsaved: Text} " END, updated_at = " {now_ms: BigInt} " WHERE id = "
        {order_id: BigInt} " AND state = 'In Process' AND (SELECT fresh FROM f) RETURNING id), \
         k AS (INSERT INTO cards (id, token, customer_id, state, brand, bin, last4, pan_length, \
         expiry_month, expiry_year, holder, pan_ciphertext, key_version, aad_version, \
         fingerprint, saved_by_merchant, saved_at, last_used_at, success_count) SELECT n.id, "
        {token: Text} ", " {customer_id: BigInt} ", 'active', " {brand: Text} ", "
        {bin: Text} ", " {last4: Text} ", " {pan_length: Integer} ", "
        {expiry_month: Integer} ", " {expiry_year: Integer} ", " {holder: Text} ", "
        {pan_ciphertext: Binary} ", " {key_version: Integer} ", " {aad_version: Integer} ", "
        {fingerprint: Binary} ", " {saved_by_merchant: BigInt} ", " {now_ms: BigInt} ", "
        {now_ms: BigInt} ", 1 FROM n, c \
         ON CONFLICT (customer_id, fingerprint) DO UPDATE SET \
         expiry_month = excluded.expiry_month, expiry_year = excluded.expiry_year, \
         holder = excluded.holder, state = 'active', \
         success_count = cards.success_count + 1, last_used_at = excluded.last_used_at \
         RETURNING *), \
         kept AS (SELECT k.*, true AS saved FROM k UNION ALL SELECT cards.*, false FROM cards \
         WHERE cards.customer_id = " {customer_id: BigInt} " AND cards.state <> 'deleted' \
         AND cards.id NOT IN (SELECT id FROM k)) \
         SELECT f.fresh, (SELECT count(*) FROM c), f.deny, f.fraud, f.version, \
         kept.id, kept.token, kept.customer_id, kept.state, kept.brand, kept.bin, kept.last4, \
         kept.pan_length, kept.expiry_month, kept.expiry_year, kept.holder, \
         kept.saved_by_merchant, kept.saved_at, kept.last_used_at, kept.success_count, \
         kept.deleted_at, kept.saved FROM f LEFT JOIN kept ON true ORDER BY kept.id"
}

prepared! {
    /// An approved payment with a saved card counts on the card.
    pub struct CountCardUse {
        id: i64,
        now_ms: i64,
    }
    sql: "UPDATE cards SET success_count = success_count + 1, last_used_at = " {now_ms: BigInt}
        " WHERE id = " {id: BigInt} ""
}

prepared! {
    /// The final reply of an order whose card was saved with it.
    pub struct SetOrderResult<'a> {
        id: i64,
        card_id: Option<i64>,
        result_json: &'a str,
    }
    sql: "UPDATE orders SET card_id = " {card_id: Nullable<BigInt>}
        ", result_json = " {result_json: Text} " WHERE id = " {id: BigInt} ""
}

prepared! {
    /// Saves a card (R5); its PAN only as ciphertext. The same number saved again for the
    /// customer (R11: one card per customer and fingerprint, a unique index) is the same card:
    /// its expiry and holder are renewed, it is active again and counts one more use, and it
    /// keeps its token and ciphertext. Returns the card's id and token.
    pub struct UpsertCard<'a> -> (BigInt, Text) {
        token: &'a str,
        customer_id: i64,
        brand: &'a str,
        bin: &'a str,
        last4: &'a str,
        pan_length: i32,
        expiry_month: i32,
        expiry_year: i32,
        holder: &'a str,
        pan_ciphertext: &'a [u8],
        key_version: i32,
        aad_version: i32,
        fingerprint: &'a [u8],
        saved_by_merchant: i64,
        now_ms: i64,
    }
    sql: "INSERT INTO cards (token, customer_id, state, brand, bin, last4, pan_length, \
          expiry_month, expiry_year, holder, pan_ciphertext, key_version, aad_version, \
          fingerprint, saved_by_merchant, saved_at, last_used_at, success_count) VALUES ("
          {token: Text} ", " {customer_id: BigInt} ", 'active', " {brand: Text} ", "
          {bin: Text} ", " {last4: Text} ", " {pan_length: Integer} ", "
          {expiry_month: Integer} ", " {expiry_year: Integer} ", " {holder: Text} ", "
          {pan_ciphertext: Binary} ", " {key_version: Integer} ", " {aad_version: Integer} ", "
          {fingerprint: Binary} ", "
          {saved_by_merchant: BigInt} ", " {now_ms: BigInt} ", " {now_ms: BigInt} ", 1) \
          ON CONFLICT (customer_id, fingerprint) DO UPDATE SET \
          expiry_month = excluded.expiry_month, expiry_year = excluded.expiry_year, \
          holder = excluded.holder, state = 'active', \
          success_count = cards.success_count + 1, last_used_at = excluded.last_used_at \
          RETURNING id, token"
}

prepared! {
    /// PostgreSQL only: [`ClaimOrder`] and, when `count_card` and the claim succeeded,
    /// [`CountCardUse`] of `card_id`, in one statement (one round trip). Returns the number of
    /// orders claimed (0 or 1).
    pub struct ClaimOrderCountingCard<'a> -> BigInt {
        id: i64,
        state: &'a str,
        response_code: &'a str,
        keep_reservation: bool,
        card_id: Option<i64>,
        network_tx_id: Option<&'a str>,
        result_json: Option<&'a str>,
        count_card: bool,
        now_ms: i64,
    }
    sql: "WITH claimed AS (UPDATE orders SET state = " {state: Text}
        ", response_code = " {response_code: Text}
        ", counts_for_limits = counts_for_limits AND " {keep_reservation: Bool} ", card_id = " {card_id: Nullable<BigInt>}
        ", network_tx_id = " {network_tx_id: Nullable<Text>}
        ", result_json = " {result_json: Nullable<Text>} ", updated_at = " {now_ms: BigInt}
        " WHERE id = " {id: BigInt} " AND state = 'In Process' RETURNING card_id), \
         counted AS (UPDATE cards SET success_count = success_count + 1, last_used_at = "
        {now_ms: BigInt} " WHERE id = (SELECT card_id FROM claimed) AND " {count_card: Bool}
        " RETURNING id) SELECT count(*) FROM claimed"
}

impl ClaimOrder<'_> {
    /// Claims the order and, when `count_card` is `Some(card id)` and the claim succeeded,
    /// counts the card's use: one statement on PostgreSQL, two on SQLite (whose `WITH` cannot
    /// hold an `UPDATE`). Returns the number of orders claimed (0 or 1).
    pub fn run(
        &self,
        conn: &mut super::AnyConnection,
        count_card: Option<i64>,
    ) -> Result<usize, super::VaultError> {
        use diesel::RunQueryDsl;
        match conn {
            super::AnyConnection::Postgresql(c) => {
                debug_assert!(count_card.is_none() || count_card == self.card_id);
                let both = ClaimOrderCountingCard {
                    id: self.id,
                    state: self.state,
                    response_code: self.response_code,
                    keep_reservation: self.keep_reservation,
                    card_id: self.card_id,
                    network_tx_id: self.network_tx_id,
                    result_json: self.result_json,
                    count_card: count_card.is_some(),
                    now_ms: self.now_ms,
                };
                let claimed: i64 = both.get_result(c)?;
                Ok(claimed as usize)
            }
            super::AnyConnection::Sqlite(c) => {
                let claimed = self.execute(c)?;
                if let (1, Some(id)) = (claimed, count_card) {
                    CountCardUse {
                        id,
                        now_ms: self.now_ms,
                    }
                    .execute(c)?;
                }
                Ok(claimed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardState, OrderState, ResponseCode};

    /// The SQL of a statement as PostgreSQL receives it.
    fn sql<T: QueryFragment<diesel::pg::Pg>>(statement: &T) -> String {
        diesel::debug_query::<diesel::pg::Pg, _>(statement).to_string()
    }

    /// SQLite's writer reads a payment's card with this statement for every saved-card payment.
    /// With a bound `LIMIT ?` SQLite re-prepared it at every new binding (measured: 33,499
    /// re-preparations in a 40 s pay-token run, 1,000 after; docs/performance.md), so it has
    /// none: `token` is unique. It reads the active card only, of this customer only.
    #[test]
    fn the_sqlite_card_read_has_no_bound_limit_and_reads_the_active_card_only() {
        let read = ReadActiveCard {
            token: "t",
            customer_id: 7,
        };
        let text = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&read).to_string();
        let sql = text.split(" -- binds").next().expect("statement");
        assert!(!sql.to_uppercase().contains("LIMIT"), "{sql}");
        let filter = format!(
            "FROM cards WHERE token = ? AND customer_id = ? AND state = '{}'",
            CardState::Active.as_str()
        );
        assert!(sql.ends_with(&filter), "{sql}");
    }

    /// The statements write a few stored spellings as SQL literals (a bind would cost nothing,
    /// but the literal keeps the plans simple): they must be the domain's spellings.
    #[test]
    fn sql_literals_are_the_domains_stored_spellings() {
        let in_process = format!("'{}'", OrderState::InProcess.as_str());
        let reserved = format!("'{}'", ResponseCode::AS300.as_str());
        let active = format!("'{}'", CardState::Active.as_str());
        let saved = ReserveSavedCard {
            union_id: 1,
            customer_number: "c",
            token: "t",
            merchant_id: 1,
            order_number: "o",
            kind: "saved_card",
            counts_for_limits: true,
            amount: 1,
            currency: "RUB",
            request_digest: &[],
            now_ms: 0,
            limited: true,
            since: 0,
            day_start: 0,
            week_start: 0,
        };
        let text = sql(&saved);
        assert!(
            text.contains(&in_process) && text.contains(&reserved),
            "{text}"
        );
        assert!(text.contains(&format!("cards.state = {active}")), "{text}");
        let claim = ClaimOrder {
            id: 1,
            state: "Approved",
            response_code: "AS000",
            keep_reservation: true,
            card_id: None,
            network_tx_id: None,
            result_json: None,
            now_ms: 0,
        };
        assert!(sql(&claim).contains(&format!("state = {in_process}")));
        let decline = DeclineOverLimit {
            id: 1,
            response_code: "AS105",
            result_json: "{}",
            now_ms: 0,
        };
        let text = sql(&decline);
        let declined = format!("'{}'", OrderState::Declined.as_str());
        assert!(
            text.contains(&format!("state = {declined}"))
                && text.contains(&format!("state = {in_process}")),
            "{text}"
        );
    }

    /// The one-statement completion saves a card only when the locked customer accepts saves:
    /// its SQL holds the rule's SQL text, and that text agrees with the rule's function for every
    /// pair of flags (evaluated by SQLite, whose booleans are PostgreSQL's here).
    #[test]
    fn the_saving_completion_applies_the_save_rule_as_the_domain_states_it() {
        use crate::domain::status::{accepts_save_offers, ACCEPTS_SAVE_OFFERS_SQL};
        use diesel::connection::Connection;
        use diesel::RunQueryDsl;
        let statement = CompleteSavingCard {
            customer_id: 1,
            customer_number: "c",
            order_id: 1,
            state: "Approved",
            response_code: "AS000",
            keep_reservation: true,
            network_tx_id: None,
            token: "t",
            brand: "VISA",
            bin: "411111",
            last4: "1111",
            pan_length: 16,
            expiry_month: 12,
            expiry_year: 2030,
            holder: "h",
            pan_ciphertext: &[],
            key_version: 1,
            aad_version: 1,
            fingerprint: &[],
            saved_by_merchant: 1,
            result_saved: "{}",
            result_unsaved: "{}",
            now_ms: 0,
        };
        let text = sql(&statement);
        assert!(
            text.contains(&format!("({ACCEPTS_SAVE_OFFERS_SQL})")),
            "{text}"
        );
        let mut conn = diesel::SqliteConnection::establish(":memory:").expect("sqlite");
        for deny in [false, true] {
            for fraud in [false, true] {
                #[derive(diesel::QueryableByName)]
                struct Answer {
                    #[diesel(sql_type = Bool)]
                    accepts: bool,
                }
                let answer: Answer = diesel::sql_query(format!(
                    "SELECT {ACCEPTS_SAVE_OFFERS_SQL} AS accepts FROM (SELECT {} AS deny, {} AS fraud)",
                    deny as i32, fraud as i32
                ))
                .get_result(&mut conn)
                .expect("evaluated");
                assert_eq!(
                    answer.accepts,
                    accepts_save_offers(deny, fraud),
                    "deny {deny}, fraud {fraud}"
                );
            }
        }
    }
}
