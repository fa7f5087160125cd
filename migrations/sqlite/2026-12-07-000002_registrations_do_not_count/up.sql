-- R12 with R13 (issue 13): a registration verifies a card and moves no money, so it never counts
-- toward the customer's day/week turnover. Versions before the fix stored registrations with
-- counts_for_limits set, and the limit check sums that column: clear it on those rows.
UPDATE orders SET counts_for_limits = 0
WHERE kind = 'registration' AND counts_for_limits = 1;
