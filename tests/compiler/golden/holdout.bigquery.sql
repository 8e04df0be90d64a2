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
          MOD(
            CAST(CONCAT(
              '0x',
              SUBSTRING(TO_HEX(MD5(CONCAT('h1:', CAST(`c`.`customer_id` AS STRING)))), 1, 8)
            ) AS INT64),
            10000
          )
        ) < 1000
      )
    )
  )
