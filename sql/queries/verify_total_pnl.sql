-- Seed README, "Verify Migration": test the function.
-- Unchanged. The function itself is fixed in migration 003 (flaw 1: realized P&L of every
-- position, closed ones included, plus unrealized P&L of open ones; flaw 7: rounded to 8 dp).
SELECT get_paper_total_pnl();
