WITH shopcrm_f0 AS (
  SELECT
    `e`.`customer_id` AS customer_id,
    SUM(`e`.`amount`) AS f0,
    COUNT(CASE WHEN NOT `e`.`amount` IS NULL THEN 1 END) AS f1
  FROM `events` AS e
  WHERE
    `e`.`event` = 'order_completed'
    AND NOT `e`.`customer_id` IS NULL
    AND `e`.`ts` < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    `e`.`customer_id`
), shopcrm_f1 AS (
  SELECT
    `e`.`customer_id` AS customer_id,
    MAX(`e`.`ts`) AS f2
  FROM `events` AS e
  WHERE
    `e`.`event` = 'session_started'
    AND NOT `e`.`customer_id` IS NULL
    AND GET_JSON_OBJECT(`e`.`properties`, '$.device') = 'ios'
    AND `e`.`ts` < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
  GROUP BY
    `e`.`customer_id`
)
SELECT
  `c`.`customer_id` AS customer_id
FROM `customers` AS c
LEFT JOIN shopcrm_f0
  ON `c`.`customer_id` = shopcrm_f0.customer_id
LEFT JOIN shopcrm_f1
  ON `c`.`customer_id` = shopcrm_f1.customer_id
WHERE
  (
    (
      shopcrm_f0.f1 > 0
      AND CAST(shopcrm_f0.f0 AS DOUBLE) >= CAST('30000.0' AS DOUBLE) * CAST(shopcrm_f0.f1 AS DOUBLE)
      AND CAST(shopcrm_f0.f0 AS DOUBLE) <= CAST('80000.5' AS DOUBLE) * CAST(shopcrm_f0.f1 AS DOUBLE)
    )
    AND (
      shopcrm_f1.f2 < CAST('2026-03-01 12:00:00.000000' AS TIMESTAMP)
      AND shopcrm_f1.f2 > CAST('2026-01-30 12:00:00.000000' AS TIMESTAMP)
    )
    AND (
      SUBSTRING(`c`.`name`, 1, 1) = '김'
    )
  )
