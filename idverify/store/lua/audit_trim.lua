-- Drops integrated audit entries that the entry bundles hold from the log's hash (issue 26):
-- below the trim point an entry lives only in its bundle (idverify/audit/trimmed_entries.py).
-- The point only moves forward, never past the integrated tree, and one call deletes at most a
-- batch and records how far it got in the same step: a crash between calls leaves the point
-- exactly where the deletions stand, and any worker's next call goes on from there.
-- KEYS: audit log, audit head, tree head
-- ARGV: target (entries the caller found durable in bundles, less those kept), batch
-- Returns the trim point after the call.
local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
local integrated = tonumber(redis.call('HGET', KEYS[3], 'size') or '0')
local target = math.min(tonumber(ARGV[1]), integrated)
if target <= trimmed then return trimmed end
local stop = math.min(target, trimmed + tonumber(ARGV[2]))
local fields = {}
for seq = trimmed, stop - 1 do fields[#fields + 1] = string.format('%d', seq) end
redis.call('HDEL', KEYS[1], unpack(fields))
redis.call('HSET', KEYS[2], 'trimmed', string.format('%d', stop))
return stop
