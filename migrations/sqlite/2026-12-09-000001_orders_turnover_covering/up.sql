DROP INDEX orders_turnover;
CREATE INDEX orders_turnover ON orders(customer_id, currency, created_at, counts_for_limits, amount);
