SELECT
  "c"."customer_id" AS customer_id
FROM "customers" AS c
WHERE
  (
    (
      "c"."grade" IN ('VIP', '골드')
    )
    AND (
      NOT (
        (
          (
            CAST(CAST('x' || SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)) FROM 1 FOR 8) AS BIT(32)) AS BIGINT)
          ) % 10000
        ) < 1000
      )
    )
  )
