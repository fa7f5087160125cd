-- Finding 7 (issue 12): a card's ciphertext is bound to its owner as well as its token.
-- aad_version names the associated data the ciphertext was sealed with (crypto::card_aad_for):
-- 1 = token only (every row written before this migration, and by tools that seed that way),
-- 2 = union, customer number and token. Old rows keep opening under version 1 until
-- `oneclick admin keys reseal` (the key-rotation loop) moves them to 2.
ALTER TABLE cards ADD COLUMN aad_version INTEGER NOT NULL DEFAULT 1;
-- The re-seal loop looks for rows still on version 1.
CREATE INDEX cards_aad_version ON cards(aad_version);
