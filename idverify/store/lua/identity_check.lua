-- CheckIdentity's wrong claims, counted per account and per calling principal over a day, and
-- the audit entry of every check. Run twice a check: 'admit' before the argon2id, so that a
-- refused check costs no hash, then 'match' or 'mismatch' with the answer. The second run judges
-- the limits again: checks admitted together cannot overshoot them, since past a limit the
-- answer is refused, right or wrong. A window starts with its first mismatch and lasts a day;
-- refusals neither count nor extend it.
-- KEYS: account mismatches, principal mismatches, audit log
-- ARGV: step ('admit' | 'match' | 'mismatch'), account limit, principal limit, window ms,
--   request json (RequestInfo.audit_fields() and the account's audit pseudonym)
-- Returns {'OK'} | {'LIMITED', reason, ttl ms}
local step, window = ARGV[1], tonumber(ARGV[4])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local reasons = {'CHECK_LIMIT_REACHED', 'PRINCIPAL_CHECK_LIMIT_REACHED'}
local base = cjson.decode(ARGV[5])

local refused, wait = nil, 0
for i = 1, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= limits[i] then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      ttl = window
    end
    refused = refused or reasons[i]
    wait = math.max(wait, ttl)
  end
end
if refused then
  audit(KEYS[3], base, {type = 'identity.checked', outcome = 'refused', reason = refused})
  return {'LIMITED', refused, wait}
end
if step == 'admit' then return {'OK'} end
if step == 'mismatch' then
  for i = 1, 2 do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], window) end
  end
end
audit(KEYS[3], base, {type = 'identity.checked', outcome = step})
return {'OK'}
