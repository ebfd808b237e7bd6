-- An account's erasure, its second step, in the tenant's slot (docs/ARCHITECTURE.md, "3.3
-- Erasure"): the erased account leaves the minutes of reads not yet summarized, whose summaries
-- then count and digest the accounts that are left (record_reads in the prelude). Idempotent:
-- removing an absent member changes nothing.
-- KEYS: the tenant's open minutes of reads (readmin:open)
-- ARGV: account pseudonym
local minutes = string.sub(KEYS[1], 1, -#'open' - 1)
for _, open in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('SREM', minutes .. open .. ':a', ARGV[1])
end
return {'OK'}
