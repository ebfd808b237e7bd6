-- Closes one principal's minute of reads into its summary entry ('reads.summarized'): the calls
-- and account reads per RPC, the distinct accounts, and the digest the caller computed over
-- them (SHA-256: Lua here has none). A minute is closed only once the delay (a whole minute by
-- default) has passed since its end, so no read still running can add to it, and only by the
-- first closer: the others find it gone.
-- KEYS: the tenant's readmin:open, the minute's accounts set, its counts hash, the audit log
-- ARGV: the open member ('<minute>:<client id>'), the number of accounts the digest covers,
--   the digest (hex), the delay (ms)
-- Returns 'CLOSED', 'GONE' (another closer was first, or its records expired), 'OPEN' (too
-- recent) or 'CHANGED' (the set is not the one digested).
local member = ARGV[1]
local minute = tonumber(redis.call('ZSCORE', KEYS[1], member))
if not minute then return 'GONE' end
if (minute + 1) * MINUTE_MS + tonumber(ARGV[4]) > NOW then return 'OPEN' end
local counts = hgetall(KEYS[3])
if not counts.principal then
  redis.call('ZREM', KEYS[1], member)
  redis.call('DEL', KEYS[2])
  return 'GONE'
end
local accounts = redis.call('SCARD', KEYS[2])
if accounts ~= tonumber(ARGV[2]) then return 'CHANGED' end
local client = string.sub(member, #string.format('%d', minute) + 2)
local fields = {type = 'reads.summarized', outcome = 'summarized', reason = '', client_id = client,
  minute_ms = string.format('%d', minute * MINUTE_MS), accounts = tostring(accounts), digest = ARGV[3]}
local calls = 0
for name, value in pairs(counts) do
  if name ~= 'principal' then
    fields[name] = value
    if string.sub(name, 1, 6) == 'calls:' then calls = calls + tonumber(value) end
  end
end
fields.calls = tostring(calls)
audit(KEYS[4], {principal = counts.principal}, fields)
redis.call('ZREM', KEYS[1], member)
redis.call('DEL', KEYS[2], KEYS[3])
return 'CLOSED'
