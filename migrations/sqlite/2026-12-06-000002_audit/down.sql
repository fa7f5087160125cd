ALTER TABLE merchants DROP COLUMN previous_signature_key_until;
ALTER TABLE merchants DROP COLUMN previous_signature_key;
DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_log;
