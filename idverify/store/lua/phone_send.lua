-- The deployment-wide half of the count before a code is sent, in the phone's own hash slot:
-- a phone locked by wrong codes gets nothing, and its hour and day windows count the sends of
-- every tenant. The code is sent only after this step answered OK (a failed count sends nothing).
-- KEYS: phone failures, sends (hour), sends (day)
-- ARGV: failures that lock the phone (0: off), hour limit, day limit (0: off)
-- Returns {'OK'} | {'LOCKED', ttl ms} | {'LIMITED', ttl ms}
local lock_at = tonumber(ARGV[1])
if lock_at > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= lock_at then
  return {'LOCKED', math.max(redis.call('PTTL', KEYS[1]), 0)}
end
local windows_ms = {3600000, 86400000}
for i = 1, 2 do
  local limit = tonumber(ARGV[i + 1])
  if limit > 0 and tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= limit then
    return {'LIMITED', math.max(redis.call('PTTL', KEYS[i + 1]), 0)}
  end
end
for i = 1, 2 do
  if tonumber(ARGV[i + 1]) > 0 and redis.call('INCR', KEYS[i + 1]) == 1 then
    redis.call('PEXPIRE', KEYS[i + 1], windows_ms[i])
  end
end
return {'OK'}
