-- Records a read whose data the caller already has in hand (GetAccount, CheckIdentity,
-- ListConsents, the audit queries, ExportAccountData): see record_reads in the prelude. On one
-- node; step by step the accounts are plain reads, then reads_record.lua (store/read_steps.py).
-- KEYS: the tenant's readmin:open (it names the tenant, and routes a read of no account), then
--   the accounts read
-- ARGV: the read spec (READ_SPEC_SIZE values), then '1' to count only accounts with a record
--   (an unknown account returns nothing of anyone) or '0' to count every one given
-- Returns the number of accounts counted.
local spec = read_spec(ARGV, 1)
local only_existing = ARGV[READ_SPEC_SIZE + 1] == '1'
local base = string.sub(KEYS[1], 1, -#'readmin:open' - 1)
local skip = #base + #'acct:'
local accounts, identities = {}, {}
for i = 2, #KEYS do
  local identity = redis.call('HGET', KEYS[i], 'identity')
  if identity or not only_existing or redis.call('EXISTS', KEYS[i]) == 1 then
    accounts[#accounts + 1] = string.sub(KEYS[i], skip + 1)
    if identity then identities[#identities + 1] = identity end
  end
end
record_reads(base, spec, accounts, identities)
return #accounts
