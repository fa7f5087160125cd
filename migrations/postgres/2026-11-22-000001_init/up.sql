-- oneclick schema, PostgreSQL flavour. Keep in step with ../../sqlite/*_init/up.sql:
-- the same tables, columns and indexes; only the column types differ (BLOB/BYTEA, AUTOINCREMENT/BIGSERIAL).
-- Times are UTC epoch milliseconds (BIGINT) so both backends compare them the same way.

-- A union is the namespace of customer numbers (docs/rules.md §1). Every merchant has one.
CREATE TABLE unions (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,               -- own | legal_entity | legal_entity_group | merchant_group
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE merchants (
    id BIGINT PRIMARY KEY,            -- the merchant_id merchants send
    name TEXT NOT NULL,
    union_id BIGINT NOT NULL REFERENCES unions(id),
    oneclick_enabled BOOLEAN NOT NULL,
    mode TEXT NOT NULL,               -- R18: standard | saved_cards_only | save_only
    need_cvc BOOLEAN NOT NULL,        -- R8
    list_threshold INTEGER NOT NULL,  -- R7
    time_zone TEXT NOT NULL,          -- R12 windows
    signature_key TEXT NOT NULL,      -- R2 HMAC key (base64); not a card key
    mit_cof BOOLEAN NOT NULL,         -- R15
    updated_at BIGINT NOT NULL
);
CREATE INDEX merchants_union ON merchants(union_id);

-- R12: day and week turnover limits per currency, in minor units; NULL = no limit.
CREATE TABLE merchant_limits (
    merchant_id BIGINT NOT NULL REFERENCES merchants(id),
    currency TEXT NOT NULL,
    day_limit BIGINT,
    week_limit BIGINT,
    PRIMARY KEY (merchant_id, currency)
);

-- Web-service users (docs/protocol.md §4): argon2 PHC strings, never plain passwords.
CREATE TABLE merchant_users (
    merchant_id BIGINT NOT NULL REFERENCES merchants(id),
    login TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    PRIMARY KEY (merchant_id, login)
);

-- A customer is (union, customer_number). deny/fraud are the merchant's flags (R6);
-- `version` is bumped by every write transaction: the UPDATE that bumps it is also the
-- per-customer lock that serialises writers across processes (row lock on PostgreSQL,
-- the write lock on SQLite).
CREATE TABLE customers (
    id BIGSERIAL PRIMARY KEY,
    union_id BIGINT NOT NULL REFERENCES unions(id),
    customer_number TEXT NOT NULL,
    deny BOOLEAN NOT NULL,
    fraud BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (union_id, customer_number)
);

-- Saved cards. The PAN exists only as AES-256-GCM ciphertext bound to `token` (associated
-- data) plus a keyed HMAC fingerprint (R11); deletion wipes both (R10). CVC has no column.
CREATE TABLE cards (
    id BIGSERIAL PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    state TEXT NOT NULL,              -- active | blocked | deleted
    brand TEXT NOT NULL,
    bin TEXT NOT NULL,                -- first 6 digits (shown, R9)
    last4 TEXT NOT NULL,              -- last 4 digits (shown, R9)
    pan_length INTEGER NOT NULL,
    expiry_month INTEGER NOT NULL,
    expiry_year INTEGER NOT NULL,
    holder TEXT NOT NULL,
    pan_ciphertext BYTEA,
    key_version INTEGER,
    fingerprint BYTEA,
    saved_by_merchant BIGINT NOT NULL,
    saved_at BIGINT NOT NULL,
    last_used_at BIGINT,
    success_count BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX cards_customer ON cards(customer_id);
CREATE INDEX cards_fingerprint ON cards(customer_id, fingerprint);
CREATE INDEX cards_key_version ON cards(key_version);

-- R15: a recurring agreement keyed by its initial order, with its own encrypted card.
CREATE TABLE recurring_agreements (
    id BIGSERIAL PRIMARY KEY,
    merchant_id BIGINT NOT NULL REFERENCES merchants(id),
    order_number TEXT NOT NULL,
    currency TEXT NOT NULL,
    min_amount BIGINT NOT NULL,
    max_amount BIGINT NOT NULL,
    period_days INTEGER NOT NULL,
    max_date TEXT NOT NULL,           -- YYYY-MM-DD
    brand TEXT NOT NULL,
    bin TEXT NOT NULL,
    last4 TEXT NOT NULL,
    pan_length INTEGER NOT NULL,
    expiry_month INTEGER NOT NULL,
    expiry_year INTEGER NOT NULL,
    holder TEXT NOT NULL,
    pan_ciphertext BYTEA NOT NULL,
    key_version INTEGER NOT NULL,
    network_tx_id TEXT,
    last_charge_on TEXT,              -- YYYY-MM-DD of the last approved charge
    charges BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (merchant_id, order_number)
);
CREATE INDEX agreements_key_version ON recurring_agreements(key_version);

-- Every payment or registration attempt (R16: unique per merchant and order number).
-- counts_for_limits: reserved, approved and in-doubt amounts count towards R12.
CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    merchant_id BIGINT NOT NULL REFERENCES merchants(id),
    order_number TEXT NOT NULL,
    kind TEXT NOT NULL,
    customer_id BIGINT REFERENCES customers(id),
    card_id BIGINT REFERENCES cards(id),
    agreement_id BIGINT REFERENCES recurring_agreements(id),
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    response_code TEXT NOT NULL,
    counts_for_limits BOOLEAN NOT NULL,
    request_digest BYTEA NOT NULL,    -- keyed HMAC of the command's identity (R16)
    result_json TEXT,                 -- the reply, stored with the effect; never card data
    network_tx_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (merchant_id, order_number)
);
CREATE INDEX orders_turnover ON orders(customer_id, currency, created_at);

-- R16 for commands without an order (deletions, status changes): caller's command_id.
CREATE TABLE processed_commands (
    merchant_id BIGINT NOT NULL,
    command_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_digest BYTEA NOT NULL,
    result_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, command_id)
);
