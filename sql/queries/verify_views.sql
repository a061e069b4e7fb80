-- Seed README, "Verify Migration": verify the views.
-- Changed: the seed used the psql meta-command `\dv v_paper_*`; this is the catalog query behind
-- it (current schema only, `_` escaped so LIKE matches a literal underscore).
SELECT c.relname AS view_name,
       pg_get_userbyid(c.relowner) AS owner
FROM pg_class AS c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relkind = 'v'
  AND c.relname LIKE 'v\_paper\_%'
ORDER BY c.relname;
