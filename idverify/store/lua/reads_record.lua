-- A read's accounting step by step, in the tenant's slot, given what the read found in the
-- accounts' buckets (docs/ARCHITECTURE.md, "3.5 The reads followed by one write"):
-- record_reads in the prelude, for the accounts the read returned (on one node the reading
-- script calls it itself). The read and this step being two round trips, an account erased in
-- between is left out: its erasure's follow-up
-- (erase_minutes.lua) has already taken it out of the open minutes and named it in
-- readmin:erased, and this step must not put it back. A step later than the read by more than
-- that name is kept answers LATE and records nothing: the caller refuses the read.
-- KEYS: the tenant's readmin:open (it names the tenant, and routes a read of no account), its
--   readmin:erased
-- ARGV: the read spec (READ_SPEC_SIZE values); the store time by which this step must run; '1' to leave out the accounts readmin:erased
--   names, '0' to count every one given; the number n of accounts; the n accounts; their n
--   identity refs ('' for an unbound one)
-- Replies: {'OK', accounts counted}; {'LATE'}
local spec = read_spec(ARGV, 1)
local record_by, leave_out_erased = ARGV[READ_SPEC_SIZE + 1], ARGV[READ_SPEC_SIZE + 2] == '1'
if NOW > tonumber(record_by) then return {'LATE'} end
local n = tonumber(ARGV[READ_SPEC_SIZE + 3])
local first = READ_SPEC_SIZE + 3
-- The name of an erased account is kept a minute at most, so the key is usually absent.
local erased = leave_out_erased and redis.call('EXISTS', KEYS[2]) == 1
local accounts, identities = {}, {}
for i = 1, n do
  local account = ARGV[first + i]
  if not (erased and redis.call('ZSCORE', KEYS[2], account)) then
    accounts[#accounts + 1] = account
    local identity = ARGV[first + n + i]
    if identity ~= '' then identities[#identities + 1] = identity end
  end
end
record_reads(string.sub(KEYS[1], 1, -#'readmin:open' - 1), spec, accounts, identities)
return {'OK', #accounts}
