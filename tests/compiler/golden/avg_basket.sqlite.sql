WITH shopcrm_f0 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    SUM("e"."amount") AS f0,
    COUNT(CASE WHEN NOT "e"."amount" IS NULL THEN 1 END) AS f1
  FROM "events" AS e
  WHERE
    "e"."event" = 'order_completed'
    AND NOT "e"."customer_id" IS NULL
    AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
  GROUP BY
    "e"."customer_id"
), shopcrm_f1 AS (
  SELECT
    "e"."customer_id" AS customer_id,
    MAX(STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts")) AS f2
  FROM "events" AS e
  WHERE
    "e"."event" = 'session_started'
    AND NOT "e"."customer_id" IS NULL
    AND JSON_EXTRACT("e"."properties", '$.device') = 'ios'
    AND STRFTIME('%Y-%m-%d %H:%M:%f', "e"."ts") < '2026-03-01 12:00:00.000'
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
WHERE
  (
    (
      shopcrm_f0.f1 > 0
      AND CAST(shopcrm_f0.f0 AS REAL) >= CAST('30000.0' AS REAL) * CAST(shopcrm_f0.f1 AS REAL)
      AND CAST(shopcrm_f0.f0 AS REAL) <= CAST('80000.5' AS REAL) * CAST(shopcrm_f0.f1 AS REAL)
    )
    AND (
      shopcrm_f1.f2 < '2026-03-01 12:00:00.000'
      AND shopcrm_f1.f2 > '2026-01-30 12:00:00.000'
    )
    AND (
      SUBSTR("c"."name", 1, 1) = '김'
    )
  )
