-- Seed README, "Monitoring": check table sizes.
-- Changed: `schemaname||'.'||tablename` broke on names that need quoting, so the relation is
-- passed as a regclass built with format('%I.%I'); `_` is escaped so LIKE matches a literal
-- underscore (the seed's 'paper_%' also matched e.g. 'paperX'); ties are ordered by name.
SELECT schemaname,
       tablename,
       pg_size_pretty(pg_total_relation_size(format('%I.%I', schemaname, tablename)::regclass))
           AS size
FROM pg_tables
WHERE tablename LIKE 'paper\_%'
ORDER BY pg_total_relation_size(format('%I.%I', schemaname, tablename)::regclass) DESC,
         schemaname, tablename;
