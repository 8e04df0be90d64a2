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
            FROM_BASE(
              SUBSTR(
                LOWER(
                  TO_HEX(
                    MD5(
                      TO_UTF8(
                        CONCAT(CAST('h1:' AS VARCHAR), CAST(CAST("c"."customer_id" AS VARCHAR) AS VARCHAR))
                      )
                    )
                  )
                ),
                1,
                8
              ),
              16
            )
          ) % 10000
        ) < 1000
      )
    )
  )
