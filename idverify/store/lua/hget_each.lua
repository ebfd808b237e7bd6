-- Reads one field of each of several hashes (a step of a chain that reads before it writes).
-- KEYS: the hashes
-- ARGV: field
-- Returns {'OK', value or nil for each key}
local values = {'OK'}
for i, key in ipairs(KEYS) do values[i + 1] = redis.call('HGET', key, ARGV[1]) end
return values
