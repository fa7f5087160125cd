-- Users of the merchant's personal account (issue 15 §2): people who sign in to the web pages,
-- separate from the web-service logins of merchant_users (a web-service password never opens
-- the personal account, nor the reverse). `password_hash` is an argon2id PHC string, as for
-- merchant_users. Failed sign-ins share login_lockouts, with sources `account:<address>`.
CREATE TABLE account_users (
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    login TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, login)
);
