SELECT
  customer_id
FROM (
  SELECT
    "c"."customer_id" AS customer_id
  FROM "customers" AS c
  WHERE
    NOT "c"."customer_id" IS NULL
    AND (
      "c"."signed_up_at" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      AND "c"."signed_up_at" <= CAST('2026-02-28 12:00:00.000000' AS TIMESTAMP)
      AND "c"."signed_up_at" > CAST('2026-02-22 12:00:00.000000' AS TIMESTAMP)
    )
  EXCEPT
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
    NOT (
      COALESCE(COUNT(*), 0) = 0
    )
) AS shopcrm_members
