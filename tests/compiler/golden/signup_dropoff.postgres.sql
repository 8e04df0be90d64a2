WITH shopcrm_f0 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    COUNT(1) AS f0
  FROM "events" AS e
  WHERE
    "e"."event" = 'order_completed'
    AND NOT "e"."customer_id" IS NULL
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    "e"."customer_id"
)
SELECT
  "c"."customer_id" AS customer_id
FROM "customers" AS c
LEFT JOIN shopcrm_f0
  ON "c"."customer_id" = shopcrm_f0.customer_id
WHERE
  (
    (
      "c"."signed_up_at" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      AND "c"."signed_up_at" <= CAST('2026-02-28 12:00:00.000000' AS TIMESTAMP)
      AND "c"."signed_up_at" > CAST('2026-02-22 12:00:00.000000' AS TIMESTAMP)
    )
    AND (
      COALESCE(shopcrm_f0.f0, 0) = 0
    )
  )
