-- A code send's count in its counter's slot (docs/ARCHITECTURE.md, "3.6 Counters in two slots"):
-- the account+phone lock-out, then the tenant's window for the phone, checked and spent in one
-- script so that concurrent sends never take it past its limit. A refusal counts in the window
-- (its first of a window is audited here, in the refusing slot); a lock-out counts nothing.
-- KEYS: account+phone failures, phone (hour), audit log
-- ARGV: max wrong codes, the window's limit (0: off), request json
-- Returns {'OK', failures} | {'LOCKED', failures} | {'LIMITED', 'phone', ttl ms}
local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
if fails >= tonumber(ARGV[1]) then return {'LOCKED', fails} end
local limited = count_windows({KEYS[2]}, {tonumber(ARGV[2])}, {'phone'}, {3600000}, KEYS[3], ARGV[3])
if limited then return limited end
return {'OK', fails}
