-- One worker delivers a subscription at a time, over every worker and replica: it holds the
-- subscription's lease (a token with a TTL, so a killed worker's lease ends by itself), and its
-- cursor moves only under the lease and the generation the worker loaded (webhook_manage.lua
-- bumps it when the subscription changes under the worker).
-- KEYS: the subscription (hash), its lease (string); for next also the tenant's outbox (stream)
--   and audit log (hash)
-- ARGV: operation, lease token, then per operation:
--   take:    lease ms                 -> 1 taken or renewed, 0 held by another or not deliverable
--   renew:   lease ms                 -> 1 still ours, 0 lost
--   give:    -                        -> 1
--   advance: generation, cursor       -> 1 moved, 0 the lease or generation is not ours any more
--   failed:  generation, error code   -> {first failure ms, now} since the last 2xx, or {} when stale
--   next:    generation, acknowledged cursor (empty: none to record), read after, count
--            -> {records after the cursor (XRANGE), their audit entries (HMGET)}, or 0 when stale:
--            the previous batch's progress and the next batch's read in one round trip
local op, token = ARGV[1], ARGV[2]
local holder = redis.call('GET', KEYS[2])
if op == 'give' then
  if holder == token then redis.call('DEL', KEYS[2]) end
  return 1
end
if op == 'take' then
  local state = redis.call('HMGET', KEYS[1], 'enabled', 'failing_ms')
  if state[1] ~= '1' or state[2] then return 0 end
  if holder and holder ~= token then return 0 end
  redis.call('SET', KEYS[2], token, 'PX', tonumber(ARGV[3]))
  return 1
end
if holder ~= token then
  if op == 'failed' then return {} end
  return 0
end
if op == 'renew' then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
  return 1
end
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[3] then
  if op == 'failed' then return {} end
  return 0
end
if op == 'advance' or (op == 'next' and ARGV[4] ~= '') then
  redis.call('HSET', KEYS[1], 'cursor', ARGV[4])
  redis.call('HDEL', KEYS[1], 'first_failure_ms', 'last_error')
end
if op == 'advance' then return 1 end
if op == 'next' then
  local after = ARGV[5] ~= '' and '(' .. ARGV[5] or '-'
  local records = redis.call('XRANGE', KEYS[3], after, '+', 'COUNT', tonumber(ARGV[6]))
  if #records == 0 then return {records, {}} end
  local numbers = {}
  for i, record in ipairs(records) do
    local fields = record[2]
    for j = 1, #fields, 2 do
      if fields[j] == 's' then numbers[i] = fields[j + 1] end
    end
  end
  return {records, redis.call('HMGET', KEYS[4], unpack(numbers))}
end
redis.call('HSETNX', KEYS[1], 'first_failure_ms', NOW)
redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
return {tonumber(redis.call('HGET', KEYS[1], 'first_failure_ms')), NOW}
