WITH shopcrm_f AS (
  SELECT
    "e"."customer_id" AS customer_id,
    SUM(
      CASE
        WHEN "e"."event" = 'order_completed'
        AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
        THEN "e"."amount"
      END
    ) AS f0,
    SUM(
      CASE
        WHEN "e"."event" = 'order_completed'
        AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
        AND NOT "e"."amount" IS NULL
        THEN 1
        ELSE 0
      END
    ) AS f1,
    MAX(
      CASE
        WHEN "e"."event" = 'session_started'
        AND JSON_EXTRACT_SCALAR("e"."properties", '$.device') = 'ios'
        AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
        THEN "e"."ts"
      END
    ) AS f2
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" IN ('order_completed', 'session_started')
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
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
      shopcrm_f.f1 > 0
      AND shopcrm_f.f0 >= 30000 * shopcrm_f.f1
      AND shopcrm_f.f0 <= 80000.5 * shopcrm_f.f1
    )
    AND (
      shopcrm_f.f2 < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      AND shopcrm_f.f2 > CAST('2026-01-30 12:00:00.000000' AS TIMESTAMP)
    )
    AND (
      SUBSTR("c"."name", 1, 1) = '김'
    )
  )
