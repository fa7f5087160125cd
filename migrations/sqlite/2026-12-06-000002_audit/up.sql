-- PCI DSS 10.2: who changed what. One row per admin or merchant-settings change, customer status
-- change, card deletion, key operation and login lockout (actors/src/vault/audit.rs owns the
-- spelling of `actor` and `action`). Never card data: no PAN, CVC, ciphertext or password.
-- Append-only, enforced here: UPDATE and DELETE are refused by triggers.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,            -- milliseconds since the Unix epoch, UTC
    actor TEXT NOT NULL,              -- admin-cli:<os user> | merchant:<id>:<login> | gateway | system
    action TEXT NOT NULL,             -- closed set, e.g. card.deleted, merchant.updated
    merchant_id BIGINT,
    customer_number TEXT,
    token TEXT,                       -- card token (a random UUID, not card data)
    detail TEXT NOT NULL              -- JSON object
);
CREATE INDEX audit_log_merchant ON audit_log(merchant_id, id);
CREATE INDEX audit_log_at ON audit_log(at_ms);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- `admin merchant rotate-signing-key --overlap D`: the previous R2 key still verifies order
-- signatures until previous_signature_key_until (ms since the epoch, UTC).
ALTER TABLE merchants ADD COLUMN previous_signature_key TEXT;
ALTER TABLE merchants ADD COLUMN previous_signature_key_until BIGINT;
