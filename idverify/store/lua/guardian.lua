-- A verified adult guardian consents for a minor's verification, which completes it. Whether
-- the guardian is an adult today the caller decided from the guardian's account as it read it
-- (the birth date is sealed); the script goes on only while the account still holds that.
-- The binding it completes is that of docs/ARCHITECTURE.md, "3.1 Binding", this script its
-- account's step: on one node the other steps run here too (bind_after_account); step by step
-- (the intent's delay given) the verification is marked in flight, the intent 'bind:<vf id>'
-- written, and the caller runs them (store/binding_steps.py).
-- KEYS: verification, audit log, account, guardian account, then its binding's two: on one node
--   the identity and its accounts, step by step (the intent's delay given) the intents and the
--   intent's record. Step by step no identity key is read here: the identity's step says
--   whether it moved (bind_place.lua).
-- ARGV: binding limit, request json, consent text version, relationship, guardian account fields
--   as read (json: identity, age_source, birth_sealed, age_band), refusal reason ('' qualifies)
--   [, the intent's delay in ms]
-- Returns {'OK', record} | {'NOT_FOUND'} | {'STATE', record} | {'MOVED'} | {'GUARDIAN', reason} |
--   {'CHANGED'} | {'BINDING', binding_inputs...} (step by step: the binding's other steps to run)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
if vf.status ~= 'NEEDS_GUARDIAN_CONSENT' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
-- On one node the identity is asked before anything is written (the place would answer the same
-- after): moving, the caller waits; moved, it looks again.
if (ARGV[7] or '') == '' then
  local moved = identity_move_reply(KEYS[5], vf)
  if moved then return moved end
end
local guardian = hgetall(KEYS[4])
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
local steps = bind_from_account({KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]}, vf, base, ARGV[7], ARGV[1],
  ARGV[2])
if steps then return steps end
return {'OK', redis.call('HGETALL', KEYS[1])}
