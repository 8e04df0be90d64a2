WITH shopcrm_f0 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    COUNT(1) AS f0
  FROM "events" AS e
  WHERE
    "e"."event" = 'product_viewed'
    AND NOT "e"."customer_id" IS NULL
    AND "e"."category" = 'shoes'
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
    AND "e"."ts" > CAST('2026-01-30 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    "e"."customer_id"
), shopcrm_f1 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    COUNT(CASE WHEN "e"."product_id" = 'P1' THEN 1 END) AS f1,
    COUNT(CASE WHEN "e"."product_id" = 'P2' THEN 1 END) AS f2
  FROM "events" AS e
  WHERE
    "e"."event" = 'order_completed'
    AND NOT "e"."customer_id" IS NULL
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
    AND (
      (
        "e"."product_id" = 'P1'
      ) OR (
        "e"."product_id" = 'P2'
      )
    )
  GROUP BY
    "e"."customer_id"
), shopcrm_f2 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    COUNT(1) AS f3
  FROM "events" AS e
  WHERE
    "e"."event" = 'promotion_joined'
    AND NOT "e"."customer_id" IS NULL
    AND "e"."promotion_id" = 'PROMO1'
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    "e"."customer_id"
)
SELECT
  "c"."customer_id" AS customer_id
FROM "customers" AS c
LEFT JOIN shopcrm_f0
  ON "c"."customer_id" = shopcrm_f0.customer_id
LEFT JOIN shopcrm_f1
  ON "c"."customer_id" = shopcrm_f1.customer_id
LEFT JOIN shopcrm_f2
  ON "c"."customer_id" = shopcrm_f2.customer_id
WHERE
  (
    (
      shopcrm_f0.f0 >= 3
    )
    AND (
      (
        shopcrm_f1.f1 >= 1
      ) OR (
        shopcrm_f1.f2 >= 1
      )
    )
    AND (
      NOT COALESCE(shopcrm_f2.f3 >= 1, FALSE)
    )
    AND (
      "c"."age" >= 20 AND "c"."age" <= 39
    )
  )
