-- Integrates appended audit entries into the stored Merkle tree, unless another process did it
-- first. The caller hashed entries [old size, new size) and folded them into the compact range;
-- this step stores the perfect subtrees those appends completed and moves the tree head, only
-- if the tree is still at the size the caller started from (check-and-set: every replica runs
-- an integrator, and whoever loses simply reads the new head and goes on from there). Nodes are
-- a pure function of the entries, so a loser's work was the same as the winner's.
-- KEYS: tree head, then one node chunk per write
-- ARGV: old size, new size, root, compact range, then (byte offset, hashes) for each write
local current = tonumber(redis.call('HGET', KEYS[1], 'size') or '0')
if current ~= tonumber(ARGV[1]) then return {'CONFLICT', current} end
for i = 2, #KEYS do
  redis.call('SETRANGE', KEYS[i], tonumber(ARGV[2 * i + 1]), ARGV[2 * i + 2])
end
redis.call('HSET', KEYS[1], 'size', ARGV[2], 'root', ARGV[3], 'range', ARGV[4])
return {'OK', tonumber(ARGV[2])}
