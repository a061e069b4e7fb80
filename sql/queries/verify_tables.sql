-- Seed README, "Verify Migration": list all paper trading tables.
-- Changed: the seed used the psql meta-command `\dt paper_*`; this is the catalog query behind
-- it, so the check runs from any client (psycopg, Grafana), not only psql. Restricted to the
-- current schema, and `_` is escaped so that LIKE matches a literal underscore.
SELECT c.relname AS table_name,
       pg_get_userbyid(c.relowner) AS owner
FROM pg_class AS c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relkind IN ('r', 'p')
  AND c.relname LIKE 'paper\_%'
ORDER BY c.relname;
