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
            (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 1, 1))
              ) - 1
            ) * 268435456 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 2, 1))
              ) - 1
            ) * 16777216 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 3, 1))
              ) - 1
            ) * 1048576 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 4, 1))
              ) - 1
            ) * 65536 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 5, 1))
              ) - 1
            ) * 4096 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 6, 1))
              ) - 1
            ) * 256 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 7, 1))
              ) - 1
            ) * 16 + (
              INSTR(
                '0123456789abcdef',
                LOWER(SUBSTRING(SUBSTRING(MD5('h1:' || CAST("c"."customer_id" AS TEXT)), 1, 8), 8, 1))
              ) - 1
            ) * 1
          ) % 10000
        ) < 1000
      )
    )
  )
