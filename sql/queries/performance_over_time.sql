-- Seed README, "Common Queries": Performance Over Time (DAILY snapshots of the last 30 days).
-- Changed (flaw 2): `snapshot_time::DATE` took the date in the session's time zone; a DAILY
-- snapshot is taken at 00:00 UTC, so its date is now the UTC date. The window is 720 hours
-- rather than '30 days', which would move with a daylight-saving change of the session's zone.
SELECT (snapshot_time AT TIME ZONE 'UTC')::date AS date,
       total_pnl_usdt,
       win_rate,
       total_trades
FROM paper_pnl_snapshots
WHERE snapshot_type = 'DAILY'
  AND snapshot_time >= now() - INTERVAL '720 hours'
ORDER BY snapshot_time;
