-- Replaces sealed fields of a verification or an account (re-sealed under the current wrapping key,
-- or pointed at where its identity moved), only if they still hold what the caller read.
-- KEYS: verification or account
-- ARGV: changes json {field: [value read, new value]}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE'} end
local changes = cjson.decode(ARGV[1])
for field, pair in pairs(changes) do
  if (redis.call('HGET', KEYS[1], field) or '') ~= pair[1] then return {'CHANGED'} end
end
for field, pair in pairs(changes) do redis.call('HSET', KEYS[1], field, pair[2]) end
return {'OK'}
