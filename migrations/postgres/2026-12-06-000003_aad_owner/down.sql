-- Rows sealed with AAD version 2 no longer open after this: re-seal is one way.
DROP INDEX cards_aad_version;
ALTER TABLE cards DROP COLUMN aad_version;
