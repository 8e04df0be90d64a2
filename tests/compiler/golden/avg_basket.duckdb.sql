SELECT
  customer_id
FROM (
  SELECT
    "c"."customer_id" AS customer_id
  FROM "customers" AS c
  WHERE
    NOT "c"."customer_id" IS NULL AND (
      SUBSTRING("c"."name", 1, 1) = '김'
    )
  INTERSECT
  SELECT
    "e"."customer_id" AS customer_id
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" = 'order_completed'
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    "e"."customer_id"
  HAVING
    (
      COUNT("e"."amount") > 0
      AND CAST(SUM("e"."amount") AS DOUBLE) >= CAST('30000.0' AS DOUBLE) * CAST(COUNT("e"."amount") AS DOUBLE)
      AND CAST(SUM("e"."amount") AS DOUBLE) <= CAST('80000.5' AS DOUBLE) * CAST(COUNT("e"."amount") AS DOUBLE)
    )
  INTERSECT
  SELECT
    "e"."customer_id" AS customer_id
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" = 'session_started'
    AND JSON_EXTRACT_STRING("e"."properties", '$.device') = 'ios'
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    "e"."customer_id"
  HAVING
    (
      MAX("e"."ts") < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      AND MAX("e"."ts") > CAST('2026-01-30 12:00:00.000000' AS TIMESTAMP)
    )
) AS shopcrm_members
