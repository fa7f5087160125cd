DROP INDEX cards_fingerprint;
CREATE INDEX cards_fingerprint ON cards(customer_id, fingerprint);
