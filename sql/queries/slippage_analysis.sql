-- Seed README, "Common Queries": Slippage Analysis (FILLED orders of the last 7 days).
-- Changed: the window is 168 hours rather than '7 days' (which moves with a daylight-saving
-- change of the session's time zone); symbols whose orders carry no slippage sort last, ties by
-- symbol, so the order is deterministic.
SELECT symbol,
       avg(slippage_pct) AS avg_slippage,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY slippage_pct) AS median_slippage,
       max(slippage_pct) AS max_slippage
FROM paper_orders
WHERE status = 'FILLED'
  AND filled_at >= now() - INTERVAL '168 hours'
GROUP BY symbol
ORDER BY avg_slippage DESC NULLS LAST, symbol;
