-- Writes a tenant's bucket layout once: a layout already stored is never replaced, so a second
-- planner, or a later release whose label search differs, cannot move a tenant's data.
-- KEYS: the tenant's buckets hash
-- ARGV: count, labels (packed), state
-- Returns 1 when this call wrote the layout, 0 when one was there
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'count', ARGV[1], 'labels', ARGV[2], 'state', ARGV[3])
return 1
