-- Nothing to undo: which rows were set before is not kept, and no version needs a registration
-- to count toward the limits (the earlier behaviour was the bug).
SELECT 1;
