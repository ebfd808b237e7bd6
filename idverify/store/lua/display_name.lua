-- CheckDisplayName's one round trip on one node: reads what the verdict needs about the account,
-- then runs the tenant's step (display_name_index.lua: the call counted, every substring's keyed
-- hash looked up) on that read, as a Cluster runs it after account_facts.lua. Nothing is written
-- but the counter.
-- KEYS: account, organization name index, the client's call counter
-- ARGV: calls allowed per window, window ms, then the substrings' hashes (hex)
-- Returns as display_name_index.lua
local acct = redis.call('HMGET', KEYS[1], 'identity', 'kind', 'assurance', 'name_tag')
local tag = acct[4] or ''
local _, own_prefix = org_name_keys(KEYS[1])
-- Appended, not copied before the hashes: they may be 2,016.
local n = #ARGV
ARGV[n + 1], ARGV[n + 2], ARGV[n + 3], ARGV[n + 4] = acct[1] and '1' or '', acct[2] or '', acct[3] or '', tag
return display_name_index({KEYS[2], KEYS[3], own_prefix .. tag}, ARGV)
