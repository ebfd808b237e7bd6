-- Moves an identity record to a new key ref: the same index sealed under the current wrapping key
-- (key rotation), or the index under a new pepper (lazy pepper migration, with the new name
-- binding). The accounts (idacc, each with its claim tag), every bound account's reference and a
-- pending erasure move with it, in one step; when the destination exists already the two are
-- merged. A forwarding record can stay behind for verifications that looked the old ref up
-- (pepper migration).
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
local held = identity_members(KEYS[2])
if redis.call('HLEN', KEYS[2]) ~= #members then return {'RETRY'} end
for _, member in ipairs(members) do
  if not held[member] then return {'RETRY'} end
end
if redis.call('HEXISTS', KEYS[3], 'moved_to') == 1 then redis.call('DEL', KEYS[3]) end
if redis.call('EXISTS', KEYS[3]) == 0 then
  record.name_binding = ARGV[3]
  if ARGV[4] ~= '' then record.pepper = ARGV[4] end
  set_fields(KEYS[3], record)
end
identity_members(KEYS[4])
for _, member in ipairs(members) do redis.call('HSET', KEYS[4], member, held[member]) end
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
