SELECT
  customer_id
FROM (
  SELECT
    customer_id
  FROM (
    SELECT
      "c"."customer_id" AS customer_id
    FROM "customers" AS c
    WHERE
      NOT "c"."customer_id" IS NULL AND (
        "c"."age" >= 20 AND "c"."age" <= 39
      )
    INTERSECT
    SELECT
      "e"."customer_id" AS customer_id
    FROM "events" AS e
    WHERE
      NOT "e"."customer_id" IS NULL
      AND "e"."event" = 'product_viewed'
      AND "e"."category" = 'shoes'
      AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      AND "e"."ts" > CAST('2026-01-30 12:00:00.000000' AS TIMESTAMP)
    GROUP BY
      "e"."customer_id"
    HAVING
      COALESCE(COUNT(*), 0) >= 3
    INTERSECT
    SELECT
      "e"."customer_id" AS customer_id
    FROM "events" AS e
    WHERE
      NOT "e"."customer_id" IS NULL
      AND (
        "e"."event" = 'order_completed'
        AND "e"."product_id" = 'P1'
        AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      )
      OR (
        "e"."event" = 'order_completed'
        AND "e"."product_id" = 'P2'
        AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      )
  ) AS s1
  EXCEPT
  SELECT
    "e"."customer_id" AS customer_id
  FROM "events" AS e
  WHERE
    NOT "e"."customer_id" IS NULL
    AND "e"."event" = 'promotion_joined'
    AND "e"."promotion_id" = 'PROMO1'
    AND "e"."ts" < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
) AS shopcrm_members
