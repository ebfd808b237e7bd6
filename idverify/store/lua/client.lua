-- Creates or revokes an API client of a tenant together with its audit entry: one step in the
-- tenant's slot. A revoked client stays listed; revoking it again changes (and records) nothing.
-- KEYS: client, the tenant's client set, audit log; to create, also the tenant's removal record
-- ARGV: 'create', client id, request json, tenant, role, description, keyed hash of the secret
--    or 'revoke', client id, request json
local base = cjson.decode(ARGV[3])
if ARGV[1] == 'create' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS'} end
  -- A tenant being removed, or removed, takes no new client (its name is never taken again).
  if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then return {'TENANT_REMOVED'} end
  redis.call('HSET', KEYS[1], 'tenant', ARGV[4], 'role', ARGV[5], 'description', ARGV[6],
    'created_ms', NOW, 'revoked', '0', 'secret_mac', ARGV[7])
  redis.call('SADD', KEYS[2], ARGV[2])
  -- The description is free text: it stays out of the log.
  audit(KEYS[3], base, {type = 'client.created', outcome = 'created', reason = '',
    client_id = ARGV[2], role = ARGV[5]})
  return {'OK', NOW}
end
if ARGV[1] ~= 'revoke' then return redis.error_reply('unknown client operation') end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOT_FOUND'} end
if redis.call('HGET', KEYS[1], 'revoked') == '1' then return {'OK', 0} end
redis.call('HSET', KEYS[1], 'revoked', '1', 'revoked_ms', NOW)
audit(KEYS[3], base, {type = 'client.revoked', outcome = 'revoked', reason = '',
  client_id = ARGV[2], role = redis.call('HGET', KEYS[1], 'role')})
return {'OK', NOW}
