-- CheckIdentity's wrong claims, counted per account and per calling principal over a day, and
-- the audit entry of every check, on one node (standalone, Sentinel): the two counters' steps
-- (check_count, docs/ARCHITECTURE.md "3.6 Counters in two slots") in one atomic script, as a
-- Cluster runs them at once (store/identity_checks.py). Scripts.py defines check_count and
-- count_give_back as functions of their own KEYS and ARGV before this body. Run twice a check:
-- 'admit' before the argon2id, so that a refused check costs no hash, then 'match' or 'mismatch'
-- with the answer. The second run judges the limits again: checks admitted together cannot
-- overshoot them, since past a limit the answer is refused, right or wrong. A refused mismatch
-- gives back the count the other counter made, within this script: a refusal counts nothing.
-- KEYS: account mismatches, principal mismatches, audit log
-- ARGV: step ('admit' | 'match' | 'mismatch'), account limit, principal limit, window ms,
--   request json (RequestInfo.audit_fields() and the account's audit pseudonym)
-- Returns {'OK'} | {'LIMITED', reason, ttl ms}
local step = ARGV[1]
local counted = {
  check_count({KEYS[1]}, {step, ARGV[2], ARGV[4], 'acct'}),
  check_count({KEYS[2]}, {step, ARGV[3], ARGV[4], 'principal'}),
}
local refused, wait = nil, 0
for i = 1, 2 do
  if counted[i][1] == 'LIMITED' then
    refused = refused or counted[i][2]
    wait = math.max(wait, counted[i][3])
  end
end
local base = cjson.decode(ARGV[5])
if refused then
  for i = 1, 2 do
    if step == 'mismatch' and counted[i][1] == 'OK' then count_give_back({'', KEYS[i]}, {''}) end
  end
  audit(KEYS[3], base, {type = 'identity.checked', outcome = 'refused', reason = refused})
  return {'LIMITED', refused, wait}
end
if step == 'admit' then return {'OK'} end
audit(KEYS[3], base, {type = 'identity.checked', outcome = step})
return {'OK'}
