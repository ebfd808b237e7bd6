-- Commits a new verification: its record, the idempotency key, its audit entries and, for a
-- method with no challenge, the binding itself (docs/ARCHITECTURE.md, "3.1 Binding": this is its
-- account's step). On one node the binding's other steps run here too (bind_after_account);
-- step by step (the intent's delay given), the verification is marked in flight, the intent
-- 'bind:<vf id>' written, and the caller runs them (store/binding_steps.py).
-- KEYS: request (the account's key: keyed over account and request id), verification, audit log,
--   account, this attempt's release marker, then in bind mode its binding's two: on one node
--   the identity and its accounts, step by step (the intent's delay given) the intents and the
--   intent's record. Step by step every key is in the account's
--   bucket (and the tenant's log): whether the identity moved is the identity's step's to say.
-- ARGV: verification id, ttl ms, record json, binding limit, request json, mode
--   [, the intent's delay in ms]; mode: challenge | bind | guardian | rejected
-- Returns {'OK', record} | {'EXISTS', verification id} | {'MOVED'} | {'RETRY'} (a move of the
--   identity in flight) | {'RELEASED'} | {'BINDING', binding_inputs...} (step by step: the
--   binding's other steps to run)
local existing = redis.call('GET', KEYS[1])
-- This attempt gave up and released its request id before its start arrived (release_request.lua).
if redis.call('EXISTS', KEYS[5]) == 1 then return {'RELEASED'} end
if existing and existing ~= ARGV[1] then return {'EXISTS', existing} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'EXISTS', ARGV[1]} end

local ttl = tonumber(ARGV[2])
local vf = cjson.decode(ARGV[3])
local mode = ARGV[6]
-- On one node the identity is asked before anything is written (the place would answer the same
-- after): moving, the caller waits; moved, it looks again.
if mode == 'bind' and (ARGV[7] or '') == '' then
  local moved = identity_move_reply(KEYS[6], vf)
  if moved then return moved end
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
  local steps = bind_from_account({KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7]}, vf, base, ARGV[7], ARGV[4],
    ARGV[5])
  if steps then return steps end
elseif mode == 'rejected' then
  finish(KEYS[2], KEYS[3], base, vf, 'REJECTED', vf.reason, false)
end
return {'OK', redis.call('HGETALL', KEYS[2])}
