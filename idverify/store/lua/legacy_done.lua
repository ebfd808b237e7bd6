-- `idverify migrate legacy`, a tenant's last step, once every account was walked: the legacy
-- events:acct map's fields left belong to no account (erased ones', which an older build's
-- erasure left, or none that exists) and go with the map; the log's head is marked (LEGACY_MOVED),
-- so that the tenant's steps stop reading and emptying the map (legacy_event_accounts). A tenant
-- without a log has no head to mark: the migration picks tenants by their logs, and writes none.
-- KEYS: the run's record, the legacy map, the audit log's head
-- Replies: {ids dropped}
local left = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], LEGACY_MOVED, '1') end
redis.call('HINCRBY', KEYS[1], 'ids_dropped', left)
redis.call('HSET', KEYS[1], 'phase', 'done', 'cursor', '0')
return {left}
