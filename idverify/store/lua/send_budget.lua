-- The tenant's half of the count before a code is sent, on one node (standalone, Sentinel): the
-- account+phone lock-out read, the counter's step (send_phone_window: the tenant's per-phone
-- window) and the tenant's (send_windows: the principal's and the tenant's budgets) in one
-- atomic script, as a Cluster's counter steps run them at once (store/code_sends.py, docs/ARCHITECTURE.md "3.6
-- Counters in two slots"). Scripts.py defines each as a function of its own KEYS and ARGV before
-- this body, and count_give_back. A refusal by the tenant's step gives the phone's count back
-- within this script, so a refused send costs no budget, as before the split.
-- KEYS: account+phone failures, phone (hour), principal (minute), principal (day),
--   tenant (minute), tenant (day), audit log
-- ARGV: max wrong codes, limit of each window in KEYS order (0: off), request json
-- Returns {'OK', failures} | {'LOCKED', failures} | {'LIMITED', window name, ttl ms}
local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
if fails >= tonumber(ARGV[1]) then return {'LOCKED', fails} end
local phone = send_phone_window({KEYS[2], KEYS[7]}, {ARGV[2], ARGV[7]})
if phone[1] ~= 'OK' then return phone end
local budgets = send_windows({KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]},
  {ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]})
if budgets[1] ~= 'OK' then
  if tonumber(ARGV[2]) > 0 then count_give_back({'', KEYS[2]}, {''}) end
  return budgets
end
return {'OK', fails}
