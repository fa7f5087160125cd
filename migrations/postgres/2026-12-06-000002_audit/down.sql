ALTER TABLE merchants DROP COLUMN previous_signature_key_until;
ALTER TABLE merchants DROP COLUMN previous_signature_key;
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP TRIGGER audit_log_no_update_or_delete ON audit_log;
DROP FUNCTION audit_log_refuse_change();
DROP TABLE audit_log;
