-- Grants one purpose for an account, with the version of the consent text shown.
-- KEYS: account, consent, audit log
-- ARGV: purpose, text version, request json, account audit pseudonym, '1' to audit ('0' when the
--   step that made the grant audited it already: a guardian's consent)
if redis.call('HEXISTS', KEYS[1], 'cancelled_ms') == 1 then return {'CANCELLED'} end
local purpose = ARGV[1]
redis.call('HSET', KEYS[2], purpose .. ':g', NOW, purpose .. ':v', ARGV[2])
redis.call('HDEL', KEYS[2], purpose .. ':w')
redis.call('HINCRBY', KEYS[2], 'rev', 1)
-- A grant of its own is lasting (a grant given with a request may have been temporary).
redis.call('PERSIST', KEYS[2])
if ARGV[5] == '1' then
  local base = cjson.decode(ARGV[3])
  base.account = ARGV[4]
  base.event_account_key = KEYS[1]
  audit(KEYS[3], base, {type = 'consent.granted', outcome = 'granted', reason = '', purpose = purpose,
    text_version = ARGV[2]})
end
return {'OK', redis.call('HGETALL', KEYS[2])}
