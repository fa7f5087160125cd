-- Every order is inserted In Process and updated exactly once when its outcome is known (the
-- claim). None of the columns the claim sets is indexed, so PostgreSQL can update the row in
-- place (a HOT update: no new entry in any of the table's three indexes) if the row's page has
-- room for the new version. With the default fillfactor (100) inserts fill each page, and about
-- half of the claims found no room. Leave a third of every page free for them.
ALTER TABLE orders SET (fillfactor = 65);
