-- A verified adult guardian consents for a minor's verification, which completes it. Whether
-- the guardian is an adult today the caller decided from the guardian's account as it read it
-- (the birth date is sealed); the script goes on only while the account still holds that.
-- KEYS: verification, audit log, account, identity, identity accounts, guardian account
-- ARGV: binding limit, request json, consent text version, relationship, guardian account fields
--   as read (json: identity, age_source, birth_sealed, age_band), refusal reason ('' qualifies)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
if vf.status ~= 'NEEDS_GUARDIAN_CONSENT' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
if identity_moving(KEYS[4]) then return {'RETRY'} end
-- The identity moved (key rotation, a new pepper) since it was looked up: the caller looks again.
if redis.call('HEXISTS', KEYS[4], 'moved_to') == 1
  or ((vf.name_binding_seen or '') ~= '' and redis.call('EXISTS', KEYS[4]) == 0) then
  return {'MOVED'}
end
local guardian = hgetall(KEYS[6])
if not guardian.identity then return {'GUARDIAN', 'GUARDIAN_NOT_VERIFIED'} end
local read = cjson.decode(ARGV[5])
for _, name in ipairs({'identity', 'age_source', 'birth_sealed', 'age_band'}) do
  if (guardian[name] or '') ~= (read[name] or '') then return {'CHANGED'} end
end
if ARGV[6] ~= '' then return {'GUARDIAN', ARGV[6]} end
if guardian.identity == vf.identity then return {'GUARDIAN', 'GUARDIAN_IS_SUBJECT'} end
local base = event_base(vf, ARGV[2], KEYS[3])
audit(KEYS[2], base, {type = 'consent.granted', outcome = 'granted', reason = '', purpose = 'guardian',
  guardian = guardian.audit, text_version = ARGV[3], relationship = ARGV[4]})
local status, reason = bind(KEYS[3], KEYS[4], KEYS[5], vf, ARGV[1], KEYS[2], base)
finish(KEYS[1], KEYS[2], base, vf, status, reason, true)
return {'OK', redis.call('HGETALL', KEYS[1])}
