-- unique_count values stored before 012 longer than 512 bytes are rewritten as their
-- digest, as 012 stores them since: a period spanning the upgrade would otherwise count
-- the same value twice (once raw, once digested). A raw row whose digest is already
-- there is simply removed.
DELETE FROM usage_rollup_values r
 WHERE octet_length(r.value) > 512
   AND EXISTS (SELECT 1 FROM usage_rollup_values d
                WHERE d.tenant_id = r.tenant_id AND d.metric = r.metric AND d.hour = r.hour
                  AND d.value = tally_unique_value(r.value));
UPDATE usage_rollup_values SET value = tally_unique_value(value) WHERE octet_length(value) > 512;
