-- A re-indexing's second step, in the new identity's slot: the record moved out (move_out.lua)
-- arrives. It creates the record, or merges into one already there: the members are unioned with
-- their 'm:' fields ('b:' wins over 'p:'; a member without a field loses a stale one the
-- destination held), and so are the LAST words of cancellations that left it without members
-- ('last:<tag>', LAST_FIELD: their names' step may not have run, and the settling step decides
-- for them), the due erasure moves, and 'incoming = <old ref>' is set, so that a binding
-- here answers RETRY until the members' accounts point here (move_settle.lua clears it).
-- Idempotent by 'incoming': a repeat answers DONE.
-- KEYS: new identity, new identity accounts, erasure queue
-- ARGV: old ref, new ref, the record as read (json {fields, members, due}), its new sealed name
--   binding, its new pepper parameters ('' keeps them)
-- Replies: {'OK'} arrived; {'DONE'} arrived before.
if redis.call('HGET', KEYS[1], 'incoming') == ARGV[1] then return {'DONE'} end
local read = cjson.decode(ARGV[3])
-- A forwarding record where the identity now goes (an earlier move back): replaced.
if redis.call('HEXISTS', KEYS[1], 'moved_to') == 1 then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local record = {}
  for field, value in pairs(read.fields) do
    if string.sub(field, 1, #MEMBER_FIELD) ~= MEMBER_FIELD and field ~= 'moving_to' then record[field] = value end
  end
  record.name_binding = ARGV[4]
  if ARGV[5] ~= '' then record.pepper = ARGV[5] end
  set_fields(KEYS[1], record)
else
  for field in pairs(read.fields) do
    if string.sub(field, 1, #LAST_FIELD) == LAST_FIELD then redis.call('HSET', KEYS[1], field, '1') end
  end
end
for _, member in ipairs(read.members) do
  local value = read.fields[MEMBER_FIELD .. member]
  if value then
    local held = redis.call('HGET', KEYS[1], MEMBER_FIELD .. member) or ''
    if not (string.sub(held, 1, 2) == 'b:' and string.sub(value, 1, 2) == 'p:') then
      redis.call('HSET', KEYS[1], MEMBER_FIELD .. member, value)
    end
  else
    -- It takes its field from its account at the next binding (identity_members).
    redis.call('HDEL', KEYS[1], MEMBER_FIELD .. member)
  end
end
if #read.members > 0 then redis.call('SADD', KEYS[2], unpack(read.members)) end
if (read.due or '') ~= '' then redis.call('ZADD', KEYS[3], read.due, 'i:' .. ARGV[2]) end
redis.call('HSET', KEYS[1], 'incoming', ARGV[1])
return {'OK'}
