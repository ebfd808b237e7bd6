-- Admits a verification to start under the account's consents: records the consents given with
-- the request as grants and registers the verification among the account's live ones, so that a
-- later withdrawal or cancellation finds it. Refuses a cancelled account, and any consent record
-- that changed since the caller decided on it (the caller decides again).
-- KEYS: account, consent, account verifications, audit log
-- ARGV: verification id, lifetime ms, consent revision read, grants json [{purpose, version}],
--   request json, account audit pseudonym, method id
-- Returns {'OK'} | {'CANCELLED'} | {'CHANGED', the consent record as it is now} (judge again)
if redis.call('HEXISTS', KEYS[1], 'cancelled_ms') == 1 then return {'CANCELLED'} end
if (redis.call('HGET', KEYS[2], 'rev') or '') ~= ARGV[3] then return {'CHANGED', redis.call('HGETALL', KEYS[2])} end
local base = cjson.decode(ARGV[5])
base.verification_id = ARGV[1]
base.account = ARGV[6]
base.event_account_key = KEYS[1]
base.method = ARGV[7]
local grants = cjson.decode(ARGV[4])
-- Consents given with a request live as long as the verification unless the account has a
-- standing record or the verification binds it (the caller then makes them lasting): nothing
-- is kept for a failed or abandoned verification but its audit entries.
local lasting = redis.call('PTTL', KEYS[2]) == -1
for _, grant in ipairs(grants) do
  redis.call('HSET', KEYS[2], grant.purpose .. ':g', NOW, grant.purpose .. ':v', grant.version)
  redis.call('HDEL', KEYS[2], grant.purpose .. ':w')
  audit(KEYS[4], base, {type = 'consent.granted', outcome = 'granted', reason = '',
    purpose = grant.purpose, text_version = grant.version})
end
if #grants > 0 then
  redis.call('HINCRBY', KEYS[2], 'rev', 1)
  if not lasting and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', NOW)
redis.call('ZADD', KEYS[3], NOW + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], tonumber(last[2]))
return {'OK'}
