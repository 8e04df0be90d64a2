SELECT
  customer_id
FROM (
  SELECT
    "c"."customer_id" AS customer_id
  FROM "customers" AS c
  WHERE
    NOT "c"."customer_id" IS NULL
  INTERSECT
  SELECT
    "e"."customer_id" AS customer_id
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" = 'order_completed'
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
    AND "e"."ts" > CAST('2025-12-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    "e"."customer_id"
  HAVING
    COALESCE(SUM("e"."amount"), 0) >= 300000
) AS shopcrm_members
