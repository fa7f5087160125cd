-- Failed merchant logins per (merchant, login, source), shared by every replica (security issue
-- 12, finding 3). `login` is whatever the caller sent (a login that does not exist is counted the
-- same way, so lockout does not reveal which logins exist); `source` is the caller's reply-inbox
-- prefix over NATS or its address over HTTP. `failures` counts failures in a row since
-- `last_failure_at` minus one lockout window; `locked_until` (ms since the epoch) is set when
-- `failures` reaches login.max_failures. A success deletes the row; `oneclick admin merchant
-- unlock` deletes the rows of a login.
CREATE TABLE login_lockouts (
    merchant_id BIGINT NOT NULL,
    login TEXT NOT NULL,
    source TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until BIGINT,
    PRIMARY KEY (merchant_id, login, source)
);
