-- Moves an identity record to a new key ref: the same index sealed under the current wrapping key
-- (key rotation), or the index under a new pepper (lazy pepper migration, with the new name
-- binding). The account set with each member's 'm:' field (its claim tag), every bound account's
-- reference and a pending erasure move with it, in one step; when the destination exists already
-- the account sets and fields are merged. A field whose account is no longer a member (left by a
-- 0.1.0 cancellation) does not move. A forwarding record can stay behind for verifications that
-- looked the old ref up (pepper migration).
-- KEYS: old identity, old identity accounts, new identity, new identity accounts, erasure queue,
--   then the account key of each bound account
-- ARGV: old ref, new ref, new sealed name binding, new pepper parameters ('' keeps them),
--   forwarding record lifetime ms ('0': none), bound account pseudonyms json (in KEYS order),
--   sealed name binding as the caller read it (it retries when anything changed)
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'moved_to') == 1 then
  return {'GONE'}
end
if ARGV[1] == ARGV[2] then return {'SAME'} end
local record = hgetall(KEYS[1])
local was = record.name_binding or ''
if was ~= ARGV[7] then return {'RETRY'} end
local members = cjson.decode(ARGV[6])
if redis.call('SCARD', KEYS[2]) ~= #members then return {'RETRY'} end
for _, member in ipairs(members) do
  if redis.call('SISMEMBER', KEYS[2], member) == 0 then return {'RETRY'} end
end
local tags = {}
for field, value in pairs(record) do
  if string.sub(field, 1, #MEMBER_FIELD) == MEMBER_FIELD then
    tags[string.sub(field, #MEMBER_FIELD + 1)] = value
    record[field] = nil
  end
end
if redis.call('HEXISTS', KEYS[3], 'moved_to') == 1 then redis.call('DEL', KEYS[3]) end
if redis.call('EXISTS', KEYS[3]) == 0 then
  record.name_binding = ARGV[3]
  if ARGV[4] ~= '' then record.pepper = ARGV[4] end
  set_fields(KEYS[3], record)
end
for _, member in ipairs(members) do
  -- A member without a field takes it from its account on the next binding (identity_members);
  -- a field the destination held for it would be a stale one.
  if tags[member] then
    redis.call('HSET', KEYS[3], MEMBER_FIELD .. member, tags[member])
  else
    redis.call('HDEL', KEYS[3], MEMBER_FIELD .. member)
  end
end
if #members > 0 then redis.call('SADD', KEYS[4], unpack(members)) end
for i = 1, #members do
  if redis.call('HGET', KEYS[5 + i], 'identity') == ARGV[1] then
    redis.call('HSET', KEYS[5 + i], 'identity', ARGV[2])
  end
end
local due = redis.call('ZSCORE', KEYS[5], 'i:' .. ARGV[1])
if due then
  redis.call('ZREM', KEYS[5], 'i:' .. ARGV[1])
  redis.call('ZADD', KEYS[5], due, 'i:' .. ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2])
if tonumber(ARGV[5]) > 0 then
  redis.call('HSET', KEYS[1], 'moved_to', ARGV[2], 'binding_was', was)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
end
return {'OK'}
