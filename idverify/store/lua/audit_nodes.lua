-- Reads runs of stored Merkle nodes (32 bytes each) in one step, for a proof or a page of leaf
-- hashes. The request and the reply are one packed string each: a proof's twenty-odd nodes
-- then cost the client about what a PING does, where a command per node costs several times
-- that. The tree's strings are named from the tree head's key (same prefix, same hash tag).
-- KEYS: the audit tree head
-- ARGV: nodes per chunk, then runs packed 11 bytes each: level (1), first index (6), count (4),
--   all big-endian; a run stays within one chunk
-- Returns the runs' bytes concatenated, a node not stored as 32 zero bytes.
local prefix = string.sub(KEYS[1], 1, -#'treehead' - 1)
local per_chunk = tonumber(ARGV[1])
local runs = ARGV[2]
local found = {}
for p = 1, #runs, 11 do
  local level = string.byte(runs, p)
  local a, b, c, d, e, f = string.byte(runs, p + 1, p + 6)
  local first = ((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f
  local g, h, i, j = string.byte(runs, p + 7, p + 10)
  local size = (((g * 256 + h) * 256 + i) * 256 + j) * 32
  local chunk = math.floor(first / per_chunk)
  local offset = (first - chunk * per_chunk) * 32
  local key = prefix .. 'tree:' .. string.format('%d', level) .. ':' .. string.format('%d', chunk)
  local value = redis.call('GETRANGE', key, offset, offset + size - 1)
  if #value < size then value = value .. string.rep('\0', size - #value) end
  found[#found + 1] = value
end
return table.concat(found)
