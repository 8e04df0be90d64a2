WITH shopcrm_f0 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    COUNT(1) AS f0
  FROM "events" AS e
  WHERE
    "e"."event" = 'order_completed'
    AND NOT "e"."customer_id" IS NULL
    AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
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
      STRFTIME('%Y-%m-%d %H:%M:%f', "c"."signed_up_at") < '2026-03-01 12:00:00.000'
      AND STRFTIME('%Y-%m-%d %H:%M:%f', "c"."signed_up_at") <= '2026-02-28 12:00:00.000'
      AND STRFTIME('%Y-%m-%d %H:%M:%f', "c"."signed_up_at") > '2026-02-22 12:00:00.000'
    )
    AND (
      COALESCE(shopcrm_f0.f0, 0) = 0
    )
  )
