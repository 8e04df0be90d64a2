WITH shopcrm_f AS (
  SELECT
    "e"."customer_id" AS customer_id,
    SUM(
      CASE
        WHEN "e"."event" = 'product_viewed'
        AND "e"."category" = 'shoes'
        AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
        AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") > '2026-01-30 12:00:00.000'
        THEN 1
        ELSE 0
      END
    ) AS f0,
    SUM(
      CASE
        WHEN "e"."event" = 'order_completed'
        AND "e"."product_id" = 'P1'
        AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
        THEN 1
        ELSE 0
      END
    ) AS f1,
    SUM(
      CASE
        WHEN "e"."event" = 'order_completed'
        AND "e"."product_id" = 'P2'
        AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
        THEN 1
        ELSE 0
      END
    ) AS f2,
    SUM(
      CASE
        WHEN "e"."event" = 'promotion_joined'
        AND "e"."promotion_id" = 'PROMO1'
        AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
        THEN 1
        ELSE 0
      END
    ) AS f3
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" IN ('order_completed', 'product_viewed', 'promotion_joined')
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
      COALESCE(shopcrm_f.f0, 0) >= 3
    )
    AND (
      (
        COALESCE(shopcrm_f.f1, 0) >= 1
      ) OR (
        COALESCE(shopcrm_f.f2, 0) >= 1
      )
    )
    AND (
      NOT (
        COALESCE(shopcrm_f.f3, 0) >= 1
      )
    )
    AND (
      "c"."age" >= 20 AND "c"."age" <= 39
    )
  )
