-- Seed README, "Monitoring": check index usage.
-- Changed: the seed's query failed (pg_stat_user_indexes has no columns `tablename` and
-- `indexname`: they are `relname` and `indexrelname`); the current schema replaces the
-- hard-coded 'public'; `_` is escaped in LIKE; ties are ordered by table and index name.
SELECT schemaname,
       relname AS tablename,
       indexrelname AS indexname,
       idx_scan AS index_scans
FROM pg_stat_user_indexes
WHERE schemaname = current_schema()
  AND relname LIKE 'paper\_%'
ORDER BY idx_scan DESC, relname, indexrelname;
