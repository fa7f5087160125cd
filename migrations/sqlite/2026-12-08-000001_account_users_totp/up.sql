-- The personal account's TOTP second factor (issue 15; docs/account.md). All three NULL: the
-- user has no second factor. `totp_secret` is the 160-bit secret sealed by the keyring
-- (AES-256-GCM, nonce || ciphertext || tag), bound by its associated data to (merchant_id,
-- login) and to `totp_key_version`, the key it was sealed under; never the secret itself.
-- `totp_last_step` is the time step (Unix seconds / 30) of the last code accepted: a code is
-- accepted only for a later step, by a compare-and-set UPDATE, so a code is used once.
ALTER TABLE account_users ADD COLUMN totp_secret BLOB;
ALTER TABLE account_users ADD COLUMN totp_key_version INTEGER;
ALTER TABLE account_users ADD COLUMN totp_last_step BIGINT;
