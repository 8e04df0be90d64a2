WITH shopcrm_nf0 AS (
  SELECT
    `a`.`customer_id` AS customer_id,
    COUNT(*) AS n
  FROM `events` AS a
  WHERE
    NOT `a`.`customer_id` IS NULL
    AND CAST(`a`.`event` AS BINARY) = CAST('cart_added' AS BINARY)
    AND `a`.`ts` < CAST('2026-03-01 12:00:00.000000' AS DATETIME(6))
    AND `a`.`ts` <= CAST('2026-02-28 12:00:00.000000' AS DATETIME(6))
    AND `a`.`ts` > CAST('2026-02-22 12:00:00.000000' AS DATETIME(6))
    AND NOT EXISTS(
      SELECT
        1
      FROM `events` AS b
      WHERE
        `b`.`customer_id` = `a`.`customer_id`
        AND CAST(`b`.`event` AS BINARY) = CAST('order_completed' AS BINARY)
        AND `b`.`ts` < CAST('2026-03-01 12:00:00.000000' AS DATETIME(6))
        AND `b`.`ts` > `a`.`ts`
        AND `b`.`ts` <= `a`.`ts` + INTERVAL '259200' SECOND
    )
  GROUP BY
    `a`.`customer_id`
)
SELECT
  `c`.`customer_id` AS customer_id
FROM `customers` AS c
LEFT JOIN shopcrm_nf0
  ON `c`.`customer_id` = shopcrm_nf0.customer_id
WHERE
  shopcrm_nf0.n >= 1
