-- Seed README, "Common Queries": Daily Summary (the last 7 UTC dates and today).
-- Changed (flaw 2): CURRENT_DATE is the date in the session's time zone, while trade_date is a
-- UTC date; the cut-off is now today's UTC date minus 7 days, so every client gets the same rows.
SELECT *
FROM v_paper_daily_summary
WHERE trade_date >= (now() AT TIME ZONE 'UTC')::date - 7
ORDER BY trade_date DESC, symbol;
