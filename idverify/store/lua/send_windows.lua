-- A code send's count in the tenant's slot (docs/ARCHITECTURE.md, "3.6 Counters in two slots"):
-- the send budgets of the calling principal and of the tenant. Every window is checked before any
-- is spent, so a refused send costs no budget; the refused window alone counts the refusal, and
-- its first refusal of a window is audited here, in the refusing slot.
-- KEYS: principal (minute), principal (day), tenant (minute), tenant (day), audit log
-- ARGV: limit of each window in KEYS order (0: off), request json
-- Returns {'OK', each window's end (Redis's ms; 0: off)...} | {'LIMITED', window name, ttl ms}
local limited, ends = count_windows({KEYS[1], KEYS[2], KEYS[3], KEYS[4]},
  {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])},
  {'principal_sends_minute', 'principal_sends_day', 'tenant_sends_minute', 'tenant_sends_day'},
  {60000, 86400000, 60000, 86400000}, KEYS[5], ARGV[5])
if limited then return limited end
return {'OK', unpack(ends)}
