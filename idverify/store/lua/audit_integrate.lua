-- Integrates appended audit entries into the stored Merkle tree, unless another process did it
-- first. The caller hashed entries [old size, new size) and folded them into the compact range;
-- this step stores the perfect subtrees those appends completed and moves the tree head, only
-- if the tree is still at the size the caller started from (check-and-set: every replica runs
-- an integrator, and whoever loses simply reads the new head and goes on from there). Nodes are
-- a pure function of the entries, so a loser's work was the same as the winner's.
-- With the tiles ('tiles': audit_tiles_dir set) the caller wrote the round's tiles first and
-- sends no nodes; the head then says 'nodes' = 'tiles' for good, and a caller without the tiles
-- is refused, since nodes written here would leave holes that no proof could cross. The round
-- that makes that switch unlinks the node chunks an older Redis-only tree left (the tiles were
-- caught up from them and checked first): from then on Redis keeps no node.
-- KEYS: tree head, then one node chunk per write ('redis'), or per chunk to unlink ('tiles')
-- ARGV: old size, new size, root, compact range, 'tiles' or 'redis', then (byte offset, hashes)
-- for each write
local current = tonumber(redis.call('HGET', KEYS[1], 'size') or '0')
if current ~= tonumber(ARGV[1]) then return {'CONFLICT', current} end
local tiled = redis.call('HGET', KEYS[1], 'nodes') == 'tiles'
if tiled and ARGV[5] ~= 'tiles' then return {'TILES_KEPT', current} end
if ARGV[5] == 'tiles' then
  if not tiled then
    redis.call('HSET', KEYS[1], 'nodes', 'tiles')
    for i = 2, #KEYS do redis.call('UNLINK', KEYS[i]) end
  end
else
  for i = 2, #KEYS do
    redis.call('SETRANGE', KEYS[i], tonumber(ARGV[2 * i + 2]), ARGV[2 * i + 3])
  end
end
redis.call('HSET', KEYS[1], 'size', ARGV[2], 'root', ARGV[3], 'range', ARGV[4])
return {'OK', tonumber(ARGV[2])}
