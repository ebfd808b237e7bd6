-- A tenant's removal (idverify/flows/tenant_removal.py), each step with its audit entry in the
-- tenant's slot. The removal record stays after the erasure, beside the audit log it closed,
-- so the tenant's name is never taken again and a re-run knows the work is done.
-- KEYS: removal record, the tenant's client set, audit log
-- ARGV: 'schedule', request json, due ms, grace days
--    or 'cancel', request json
--    or 'close', request json
local base = cjson.decode(ARGV[2])
local state = redis.call('HGET', KEYS[1], 'state')
local client_prefix = string.sub(KEYS[2], 1, -2) .. ':'  -- '...:clients' -> '...:client:'

if ARGV[1] == 'schedule' then
  if state then return {'STATE', state, redis.call('HGET', KEYS[1], 'due_ms')} end
  local ids = redis.call('SMEMBERS', KEYS[2])
  table.sort(ids)
  -- Operators administer every tenant: removing theirs would leave no one to do it.
  local operators = {}
  for _, id in ipairs(ids) do
    local client = hgetall(client_prefix .. id)
    if client.role == 'operator' and client.revoked == '0' then operators[#operators + 1] = id end
  end
  if #operators > 0 then return {'OPERATORS', table.concat(operators, ',')} end
  redis.call('HSET', KEYS[1], 'state', 'scheduled', 'due_ms', ARGV[3], 'scheduled_ms', NOW,
    'scheduled_by', base.principal or '')
  local revoked = 0
  for _, id in ipairs(ids) do
    local key = client_prefix .. id
    if redis.call('HGET', key, 'revoked') == '0' then
      redis.call('HSET', key, 'revoked', '1', 'revoked_ms', NOW)
      audit(KEYS[3], base, {type = 'client.revoked', outcome = 'revoked', reason = 'TENANT_REMOVAL',
        client_id = id, role = redis.call('HGET', key, 'role')})
      revoked = revoked + 1
    end
  end
  audit(KEYS[3], base, {type = 'tenant.removal_scheduled', outcome = 'scheduled', reason = '',
    due_ms = ARGV[3], grace_days = ARGV[4], clients_revoked = tostring(revoked)})
  return {'OK', NOW, revoked}
end

if ARGV[1] == 'cancel' then
  if state ~= 'scheduled' then return {'STATE', state or ''} end
  redis.call('DEL', KEYS[1])
  audit(KEYS[3], base, {type = 'tenant.removal_cancelled', outcome = 'cancelled', reason = ''})
  return {'OK'}
end

if ARGV[1] ~= 'close' then return redis.error_reply('unknown tenant removal step') end
if state ~= 'scheduled' then return {'STATE', state or ''} end
local due = tonumber(redis.call('HGET', KEYS[1], 'due_ms'))
if NOW < due then return {'NOT_DUE', due} end
-- The last entry of the log: everything of the tenant but this log is erased after it.
audit(KEYS[3], base, {type = 'tenant.removed', outcome = 'removed', reason = ''})
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_ms', NOW)
return {'OK', NOW}
