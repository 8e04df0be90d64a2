SELECT
  `c`.`customer_id` AS customer_id
FROM `customers` AS c
WHERE
  (
    (
      CAST(`c`.`grade` AS BINARY) IN (CAST('VIP' AS BINARY), CAST('골드' AS BINARY))
    )
    AND (
      NOT (
        (
          (
            CAST(CONV(SUBSTRING(MD5(CONCAT('h1:', CAST(`c`.`customer_id` AS CHAR))), 1, 8), 16, 10) AS UNSIGNED)
          ) % 10000
        ) < 1000
      )
    )
  )
