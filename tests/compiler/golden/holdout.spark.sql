SELECT
  `c`.`customer_id` AS customer_id
FROM `customers` AS c
WHERE
  (
    (
      `c`.`grade` IN ('VIP', '골드')
    )
    AND (
      NOT (
        (
          (
            CAST(CONV(SUBSTRING(MD5(CONCAT('h1:', CAST(`c`.`customer_id` AS STRING))), 1, 8), 16, 10) AS BIGINT)
          ) % 10000
        ) < 1000
      )
    )
  )
