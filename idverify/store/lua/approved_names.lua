-- SetApprovedNames' one script on one node: reads the account, then runs the tenant's step
-- (approved_names_index.lua: the refusals, the names replaced, the audit entry) on that read, as
-- a Cluster runs it after account_facts.lua.
-- KEYS: account, organization name index, audit log
-- ARGV: request json, the tenant's claim assurance, how many names, the names' hashes (hex),
--   then the hashes of every substring of two characters or more of the names
-- Returns as approved_names_index.lua
local acct = redis.call('HMGET', KEYS[1], 'identity', 'kind', 'assurance', 'name_tag', 'audit')
local tag = acct[4] or ''
local _, own_prefix = org_name_keys(KEYS[1])
-- Appended, not copied before the hashes: they may be thousands.
local n = #ARGV
ARGV[n + 1], ARGV[n + 2], ARGV[n + 3] = acct[1] and '1' or '', acct[2] or '', acct[3] or ''
ARGV[n + 4], ARGV[n + 5] = tag, acct[5] or ''
return approved_names_index({KEYS[2], own_prefix .. tag, KEYS[3]}, ARGV)
