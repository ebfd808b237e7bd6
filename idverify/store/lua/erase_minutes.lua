-- An account's erasure, its second step, in the tenant's slot (docs/ARCHITECTURE.md, "3.3
-- Erasure"): the erased account leaves the minutes of reads not yet summarized, whose summaries
-- then count and digest the accounts that are left (record_reads in the prelude). Where a read
-- and its accounting are two round trips (a Cluster, "3.5 The reads followed by one write"), a
-- read of the account just before its erasure may record it after this step: the account is
-- then named in readmin:erased for keep ms, which that accounting (reads_record.lua) leaves out,
-- and which an accounting later than that refuses to record at all. Idempotent: removing an
-- absent member changes nothing, naming it again restarts its minute.
-- KEYS: the tenant's open minutes of reads (readmin:open), its erased accounts (readmin:erased)
-- ARGV: account pseudonym, how long to name it in readmin:erased in ms ('': not at all, a read
--   and its accounting being one script)
local minutes = string.sub(KEYS[1], 1, -#'open' - 1)
for _, open in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('SREM', minutes .. open .. ':a', ARGV[1])
end
if ARGV[2] ~= '' then
  local keep = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[2], NOW, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', NOW - keep)
  redis.call('PEXPIRE', KEYS[2], keep)
end
return {'OK'}
