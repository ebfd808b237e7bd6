-- A code send's count in its counter's slot (docs/ARCHITECTURE.md, "3.6 Counters in two slots"):
-- the tenant's window for the phone, checked and spent in one script so that concurrent sends
-- never take it past its limit. A refusal counts in the window, and its first of a window is
-- audited here, in the refusing slot. The account+phone lock-out is read apart, in the account's
-- slot (send_budget.lua on one node, store/code_sends.py at once with the counts elsewhere).
-- KEYS: phone (hour), audit log
-- ARGV: the window's limit (0: off), request json
-- Returns {'OK', the window's end (Redis's ms; 0: off)} | {'LIMITED', 'phone', ttl ms}
local limited, ends = count_windows({KEYS[1]}, {tonumber(ARGV[1])}, {'phone'}, {3600000}, KEYS[2], ARGV[2])
if limited then return limited end
return {'OK', ends[1]}
