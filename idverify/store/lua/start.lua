-- Commits a new verification: its record, the idempotency key, its audit entries and, for a
-- method with no challenge, the binding itself (docs/ARCHITECTURE.md, "3.1 Binding": this is its
-- account's step). On one node the binding's other steps run here too (bind_after_account);
-- step by step (the intent's delay given), the verification is marked in flight, the intent
-- 'bind:<vf id>' written, and the caller runs them (store/binding_steps.py).
-- KEYS: request, verification, audit log, account, identity, identity accounts, this attempt's
--   release marker [, intents, the intent's record]
-- ARGV: verification id, ttl ms, record json, binding limit, request json, mode
--   [, the intent's delay in ms]; mode: challenge | bind | guardian | rejected
-- Returns {'OK', record} | {'EXISTS', verification id} | {'MOVED'} | {'RETRY'} (a move of the
--   identity in flight) | {'RELEASED'} | {'BINDING', binding_inputs...} (step by step: the
--   binding's other steps to run)
local existing = redis.call('GET', KEYS[1])
-- This attempt gave up and released its request id before its start arrived (release_request.lua).
if redis.call('EXISTS', KEYS[7]) == 1 then return {'RELEASED'} end
if existing and existing ~= ARGV[1] then return {'EXISTS', existing} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'EXISTS', ARGV[1]} end

local ttl = tonumber(ARGV[2])
local vf = cjson.decode(ARGV[3])
local mode = ARGV[6]
if mode == 'bind' and identity_moving(KEYS[5]) then return {'RETRY'} end
-- The identity moved (key rotation, a new pepper) since it was looked up: the caller looks again.
if mode == 'bind' and (redis.call('HEXISTS', KEYS[5], 'moved_to') == 1
  or ((vf.name_binding_seen or '') ~= '' and redis.call('EXISTS', KEYS[5]) == 0)) then
  return {'MOVED'}
end
vf.id = ARGV[1]
vf.created_ms = NOW
vf.expires_ms = NOW + ttl
local base = event_base(vf, ARGV[5], KEYS[4])

audit(KEYS[3], base, {type = 'verification.started', outcome = 'started', reason = ''})
for _, step in ipairs(cjson.decode(vf.steps)) do
  audit(KEYS[3], base, {type = 'verification.step', outcome = step.outcome, reason = step.reason,
    vendor_code = step.vendor_code, steps = {step}})
end
if mode == 'challenge' then
  vf.challenge_expires_ms = NOW + tonumber(vf.challenge_ttl_ms)
  audit(KEYS[3], base, {type = 'challenge.sent', outcome = 'sent', reason = ''})
elseif mode == 'guardian' then
  audit(KEYS[3], base, {type = 'verification.needs_guardian', outcome = 'pending', reason = ''})
end
set_fields(KEYS[2], vf)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
if mode == 'bind' then
  local steps = bind_from_account({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8], KEYS[9]}, vf, base,
    ARGV[7], ARGV[4], ARGV[5])
  if steps then return steps end
elseif mode == 'rejected' then
  finish(KEYS[2], KEYS[3], base, vf, 'REJECTED', vf.reason, false)
end
return {'OK', redis.call('HGETALL', KEYS[2])}
