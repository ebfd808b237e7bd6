-- A re-indexing's first step, in the old identity's slot (docs/ARCHITECTURE.md, "3.4
-- Re-indexing"): the record is marked 'moving_to = <new ref>' if it still holds exactly what the
-- caller read (its fields with the members' 'm:' fields, its members, its due erasure), which is
-- what the later steps carry to the new ref. While the mark is there a binding of the identity
-- answers RETRY (identity_moving), so no place is taken on half of the members. Step by step it
-- writes the durable intent 'move:<sha1 of the old ref>' holding the move, which the last step
-- (move_finish.lua) removes and the repairer finishes from (intent_take.lua); joined into one EVAL
-- on one node it writes none.
-- KEYS: old identity, old identity accounts, erasure queue, intents, the intent's record
-- ARGV: old ref, new ref, the record as read (json {fields, members, due}), the move (json
--   {binding, pepper, forward_ms}: what the intent keeps for the repair), the intent's delay ms
--   ('': write none)
-- Replies: {'OK'} marked; {'SAME'} the same ref; {'GONE'} no record, or a forwarding one;
--   {'MOVING'} a move of it (out or in) is in flight: the caller waits; {'RETRY'} it changed
--   since it was read.
local record = hgetall(KEYS[1])
if next(record) == nil or record.moved_to then return {'GONE'} end
if ARGV[1] == ARGV[2] then return {'SAME'} end
if record.moving_to or record.incoming then return {'MOVING'} end
local ok, read = pcall(cjson.decode, ARGV[3])
if not ok or type(read) ~= 'table' or type(read.fields) ~= 'table' or type(read.members) ~= 'table' then
  return {'RETRY'}
end
local count = 0
for field, value in pairs(record) do
  if read.fields[field] ~= value then return {'RETRY'} end
  count = count + 1
end
for _ in pairs(read.fields) do count = count - 1 end
if count ~= 0 then return {'RETRY'} end
if redis.call('SCARD', KEYS[2]) ~= #read.members then return {'RETRY'} end
for _, member in ipairs(read.members) do
  if redis.call('SISMEMBER', KEYS[2], member) == 0 then return {'RETRY'} end
end
local due = redis.call('ZSCORE', KEYS[3], 'i:' .. ARGV[1])
local due_read = (read.due or '') ~= '' and tonumber(read.due) or false
if (due and tonumber(due)) ~= due_read then return {'RETRY'} end
redis.call('HSET', KEYS[1], 'moving_to', ARGV[2])
if ARGV[5] ~= '' then
  -- No TTL: only the sequence's last step or the repairer's refusal removes it.
  local member = 'move:' .. redis.sha1hex(ARGV[1])
  redis.call('DEL', KEYS[5])
  redis.call('HSET', KEYS[5], 'kind', 'move', 'subject', redis.sha1hex(ARGV[1]), 'old', ARGV[1], 'new', ARGV[2],
    'read', ARGV[3], 'move', ARGV[4])
  redis.call('ZADD', KEYS[4], NOW + tonumber(ARGV[5]), member)
end
return {'OK'}
