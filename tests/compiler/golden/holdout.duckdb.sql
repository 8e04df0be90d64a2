SELECT
  customer_id
FROM (
  SELECT
    "c"."customer_id" AS customer_id
  FROM "customers" AS c
  WHERE
    NOT "c"."customer_id" IS NULL AND (
      "c"."grade" IN ('VIP', '골드')
    )
  EXCEPT
  SELECT
    "c"."customer_id" AS customer_id
  FROM "customers" AS c
  WHERE
    NOT "c"."customer_id" IS NULL
    AND (
      (
        (
          CAST('0x' || SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8) AS BIGINT)
        ) % 10000
      ) < 1000
    )
) AS shopcrm_members
