ALTER TABLE account_users DROP COLUMN totp_last_step;
ALTER TABLE account_users DROP COLUMN totp_key_version;
ALTER TABLE account_users DROP COLUMN totp_secret;
