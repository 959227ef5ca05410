-- unique_count values: a value longer than 512 bytes is kept as its SHA-256 digest, so
-- one event's metadata (up to 8 KiB) can never exceed the index row size of
-- usage_rollup_values and fail the batch it came in. Distinct values stay distinct.
-- The Aggregator's rollup insert and the usage reads of raw events both use it.
CREATE FUNCTION tally_unique_value(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(value) <= 512 THEN value
                ELSE 'sha256:' || encode(sha256(convert_to(value, 'UTF8')), 'hex') END
$$;
