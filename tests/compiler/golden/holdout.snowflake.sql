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
            TO_NUMBER(
              SUBSTRING(MD5(CONCAT('h1:', CAST("c"."customer_id" AS VARCHAR))), 1, 8),
              'XXXXXXXX'
            )
          ) % 10000
        ) < 1000
      )
    )
  )
