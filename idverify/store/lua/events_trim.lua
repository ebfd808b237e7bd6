-- Drops the outbox records older than the events' retention, and remembers the newest dropped,
-- so a stream resuming from a cursor below it is told its events are gone rather than skip them.
-- KEYS: outbox stream, trimmed marker
-- ARGV: retention ms
-- Returns the number of records dropped.
local cut = string.format('%d-0', math.max(NOW - tonumber(ARGV[1]), 0))
local newest_dropped = redis.call('XREVRANGE', KEYS[1], '(' .. cut, '-', 'COUNT', 1)
if #newest_dropped == 0 then return 0 end
local dropped = redis.call('XTRIM', KEYS[1], 'MINID', cut)
redis.call('SET', KEYS[2], newest_dropped[1][1])
return dropped
