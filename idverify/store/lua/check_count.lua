-- CheckIdentity's wrong claims in one counter's slot (docs/ARCHITECTURE.md, "3.6 Counters in two
-- slots"): the account's (chkfail:acct) or the calling principal's (chkfail:principal), checked
-- and, for a mismatch, counted in one script, so that checks admitted together never take it past
-- its limit. A window starts with its first mismatch and lasts a day; refusals neither count nor
-- extend it. The check's audit entry is written by whoever knows both counters' answers
-- (identity_check.lua on one node, check_entry.lua after the two steps on a Cluster).
-- KEYS: the counter
-- ARGV: step ('admit' | 'match' | 'mismatch'), limit, window ms, the counter's scope ('acct' | 'principal')
-- Returns {'OK'} | {'OK', the window's end (Redis's ms): a mismatch counted} | {'LIMITED', reason, ttl ms}
local window = tonumber(ARGV[3])
local reasons = {acct = 'CHECK_LIMIT_REACHED', principal = 'PRINCIPAL_CHECK_LIMIT_REACHED'}
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], window)
    ttl = window
  end
  return {'LIMITED', reasons[ARGV[4]], ttl}
end
if ARGV[1] ~= 'mismatch' then return {'OK'} end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], window) end
return {'OK', REDIS_TIME_MS + redis.call('PTTL', KEYS[1])}
