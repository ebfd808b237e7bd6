-- The tenant's half of the count before a code is sent: the account+phone lock-out, the
-- tenant's per-phone window, and the send budgets of the calling principal and of the tenant.
-- Every window is checked before any is spent, so a refused send costs no budget; the refused
-- window alone counts the refusal, and its first refusal of a window is audited.
-- KEYS: account+phone failures, phone (hour), principal (minute), principal (day),
--   tenant (minute), tenant (day), audit log
-- ARGV: max wrong codes, limit of each window in KEYS order (0: off), request json
-- Returns {'OK', failures} | {'LOCKED', failures} | {'LIMITED', window name, ttl ms}
local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
if fails >= tonumber(ARGV[1]) then return {'LOCKED', fails} end
local names = {'phone', 'principal_sends_minute', 'principal_sends_day', 'tenant_sends_minute',
  'tenant_sends_day'}
local windows_ms = {3600000, 60000, 86400000, 60000, 86400000}
for i = 1, 5 do
  local limit = tonumber(ARGV[i + 1])
  if limit > 0 and tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= limit then
    local count = redis.call('INCR', KEYS[i + 1])
    local ttl = redis.call('PTTL', KEYS[i + 1])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i + 1], windows_ms[i])
      ttl = windows_ms[i]
    end
    if count == limit + 1 then
      local request = cjson.decode(ARGV[7])
      request.limit = names[i]
      audit(KEYS[7], request, {type = 'rate_limit.hit', outcome = 'limited', reason = 'RATE_LIMITED'})
    end
    return {'LIMITED', names[i], ttl}
  end
end
for i = 1, 5 do
  if tonumber(ARGV[i + 1]) > 0 and redis.call('INCR', KEYS[i + 1]) == 1 then
    redis.call('PEXPIRE', KEYS[i + 1], windows_ms[i])
  end
end
return {'OK', fails}
