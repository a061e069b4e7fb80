-- Seed README, "Common Queries": Fill Rate by Symbol (get_paper_fill_rate: FILLED, PARTIAL or
-- PARTIALLY_FILLED among the symbol's orders created in the last 7 / 30 days of 24 hours).
-- Changed: ties are ordered by symbol, so the order is deterministic.
SELECT symbol,
       get_paper_fill_rate(symbol, 7) AS fill_rate_7d,
       get_paper_fill_rate(symbol, 30) AS fill_rate_30d
FROM (SELECT DISTINCT symbol FROM paper_orders) AS symbols
ORDER BY fill_rate_7d DESC, symbol;
