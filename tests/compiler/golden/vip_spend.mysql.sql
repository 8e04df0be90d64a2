WITH shopcrm_f0 AS (
  SELECT
    `e`.`customer_id` AS customer_id,
    SUM(`e`.`amount`) AS f0
  FROM `events` AS e
  WHERE
    `e`.`event` = 'order_completed'
    AND NOT `e`.`customer_id` IS NULL
    AND CAST(`e`.`event` AS BINARY) = CAST('order_completed' AS BINARY)
    AND `e`.`ts` < CAST('2026-03-01 12:00:00.000000' AS DATETIME(6))
    AND `e`.`ts` > CAST('2025-12-01 12:00:00.000000' AS DATETIME(6))
  GROUP BY
    `e`.`customer_id`
)
SELECT
  `c`.`customer_id` AS customer_id
FROM `customers` AS c
LEFT JOIN shopcrm_f0
  ON `c`.`customer_id` = shopcrm_f0.customer_id
WHERE
  shopcrm_f0.f0 >= 300000
