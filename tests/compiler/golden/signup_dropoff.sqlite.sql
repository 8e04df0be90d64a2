WITH shopcrm_f AS (
  SELECT
    "e"."customer_id" AS customer_id,
    SUM(
      CASE
        WHEN "e"."event" = 'order_completed'
        AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
        THEN 1
        ELSE 0
      END
    ) AS f0
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" IN ('order_completed')
    AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
  GROUP BY
    "e"."customer_id"
)
SELECT
  "c"."customer_id" AS customer_id
FROM "customers" AS c
LEFT JOIN shopcrm_f
  ON "c"."customer_id" = shopcrm_f.customer_id
WHERE
  (
    (
      STRFTIME('%Y-%m-%d %H:%M:%f', "c"."signed_up_at") < '2026-03-01 12:00:00.000'
      AND STRFTIME('%Y-%m-%d %H:%M:%f', "c"."signed_up_at") <= '2026-02-28 12:00:00.000'
      AND STRFTIME('%Y-%m-%d %H:%M:%f', "c"."signed_up_at") > '2026-02-22 12:00:00.000'
    )
    AND (
      COALESCE(shopcrm_f.f0, 0) = 0
    )
  )
