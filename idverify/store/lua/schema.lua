-- Records the schema version of the data a server starts on: raised to this release's version,
-- never lowered, since a newer server may have raised it between the caller's read and now.
-- KEYS: the schema version key
-- ARGV: this release's schema version
-- Returns the version the key held before (0: none)
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return held
