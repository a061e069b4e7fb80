-- Seed README, "Verify Migration": check the structure of paper_orders.
-- Changed: the seed used the psql meta-command `\d paper_orders`; this lists the same columns
-- (name, type, nullability, default, generated expression) from information_schema so any
-- client can run it. Column order is the table's.
SELECT column_name,
       CASE WHEN data_type = 'numeric'
            THEN format('numeric(%s,%s)', numeric_precision, numeric_scale)
            WHEN character_maximum_length IS NOT NULL
            THEN format('%s(%s)', data_type, character_maximum_length)
            ELSE data_type END AS column_type,
       is_nullable = 'YES' AS nullable,
       column_default,
       generation_expression
FROM information_schema.columns
WHERE table_schema = current_schema()
  AND table_name = 'paper_orders'
ORDER BY ordinal_position;
