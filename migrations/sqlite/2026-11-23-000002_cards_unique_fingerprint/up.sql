-- R11 (the same card number saved again for a customer is the same card) as a constraint: one
-- card per (customer, fingerprint). Deleted cards have their fingerprint wiped (NULL), and NULLs
-- never collide, so a card deleted and then saved again gets a new row. A save is then one
-- `INSERT … ON CONFLICT (customer_id, fingerprint) DO UPDATE` instead of a lookup and a write.
DROP INDEX cards_fingerprint;
CREATE UNIQUE INDEX cards_fingerprint ON cards(customer_id, fingerprint);
