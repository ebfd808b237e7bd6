-- A verified adult guardian consents for a minor's verification, which completes it. Whether
-- the guardian is an adult today the caller decided from the guardian's account as it read it
-- (the birth date is sealed); the script goes on only while the account still holds that.
-- On one node "still" is inside this script: it reads the guardian's account itself. Step by step
-- (a Cluster) the guardian's account is another bucket's (A'), so the store reads it in a round
-- trip of its own right before this step and passes what it read; that read is where the consent
-- is judged (docs/ARCHITECTURE.md, "3.1 Binding", "A guardian's consent").
-- The binding it completes is that of docs/ARCHITECTURE.md, "3.1 Binding", this script its
-- account's step: on one node the other steps run here too (bind_after_account); step by step
-- (the intent's delay given) the verification is marked in flight, the intent 'bind:<vf id>'
-- written, and the caller runs them (store/binding_steps.py).
-- KEYS: verification, audit log, account, then its binding's two: on one node the identity and its
--   accounts, then the guardian's account; step by step (the intent's delay given) the intents
--   and the intent's record, and no key of the identity or of the guardian's account: the
--   identity's step says whether it moved (bind_place.lua).
-- ARGV: binding limit, request json, consent text version, relationship, guardian account fields
--   as judged (json: identity, age_source, birth_sealed, age_band), refusal reason ('' qualifies)
--   [, the intent's delay in ms, the guardian's account as the store read it just before (json:
--   the judged fields and audit, each only when set)]
-- Returns {'OK', record} | {'NOT_FOUND'} | {'STATE', record} | {'MOVED'} | {'GUARDIAN', reason} |
--   {'CHANGED'} | {'BINDING', binding_inputs...} (step by step: the binding's other steps to run)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
local vf = hgetall(KEYS[1])
if vf.status ~= 'NEEDS_GUARDIAN_CONSENT' then return {'STATE', redis.call('HGETALL', KEYS[1])} end
local step_by_step = (ARGV[7] or '') ~= ''
local guardian
if step_by_step then
  guardian = cjson.decode(ARGV[8])
else
  -- On one node the identity is asked before anything is written (the place would answer the
  -- same after): moving, the caller waits; moved, it looks again.
  local moved = identity_move_reply(KEYS[4], vf)
  if moved then return moved end
  guardian = hgetall(KEYS[6])
end
if not guardian.identity then return {'GUARDIAN', 'GUARDIAN_NOT_VERIFIED'} end
local judged = cjson.decode(ARGV[5])
for _, name in ipairs({'identity', 'age_source', 'birth_sealed', 'age_band'}) do
  if (guardian[name] or '') ~= (judged[name] or '') then return {'CHANGED'} end
end
if ARGV[6] ~= '' then return {'GUARDIAN', ARGV[6]} end
if guardian.identity == vf.identity then return {'GUARDIAN', 'GUARDIAN_IS_SUBJECT'} end
local base = event_base(vf, ARGV[2], KEYS[3])
audit(KEYS[2], base, {type = 'consent.granted', outcome = 'granted', reason = '', purpose = 'guardian',
  guardian = guardian.audit, text_version = ARGV[3], relationship = ARGV[4]})
local steps = bind_from_account({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}, vf, base, ARGV[7], ARGV[1],
  ARGV[2])
if steps then return steps end
return {'OK', redis.call('HGETALL', KEYS[1])}
