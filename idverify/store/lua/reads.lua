-- Records a read whose data the caller already has in hand (GetAccount, CheckIdentity,
-- ListConsents, the audit queries, ExportAccountData), on one node: the accounts' identity refs
-- (and whether each exists) read, then the accounting (reads_record.lua, a function composed
-- before this body by scripts.py), as a Cluster runs them in two round trips
-- (docs/ARCHITECTURE.md, "3.5 The reads followed by one write").
-- KEYS: the tenant's readmin:open (it names the tenant, and routes a read of no account), then
--   the accounts read
-- ARGV: the read spec (READ_SPEC_SIZE values), then '1' to count only accounts with a record
--   (an unknown account returns nothing of anyone) or '0' to count every one given
-- Returns the number of accounts counted.
local only_existing = ARGV[READ_SPEC_SIZE + 1] == '1'
local base = string.sub(KEYS[1], 1, -#'readmin:open' - 1)
local skip = #base + #'acct:'
local accounts, identities = {}, {}
for i = 2, #KEYS do
  local identity = redis.call('HGET', KEYS[i], 'identity')
  if identity or not only_existing or redis.call('EXISTS', KEYS[i]) == 1 then
    accounts[#accounts + 1] = string.sub(KEYS[i], skip + 1)
    identities[#identities + 1] = identity or ''
  end
end
return reads_record({KEYS[1], base .. 'readmin:erased'}, recorded_args(1, accounts, identities))[2]
