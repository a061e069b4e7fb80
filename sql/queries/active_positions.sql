-- Seed README, "Common Queries": Active Positions.
-- Changed: ties (and NULL P&L, last) are ordered by symbol, so the order is deterministic, as in
-- the view itself.
SELECT *
FROM v_paper_active_positions
ORDER BY total_pnl_usdt DESC NULLS LAST, symbol;
