-- Webhook subscriptions of a tenant: created, enabled, disabled, re-keyed, deleted, replayed
-- from a cursor, or marked failing, each with its audit entry in the same step. A change that
-- the delivering worker must see (a new secret, a cursor moved back, disabled) bumps the
-- subscription's generation: the worker's next cursor advance is refused and it reloads.
-- KEYS: the tenant's subscription ids (set), the subscription (hash), audit log
-- ARGV: operation, request json, subscription id, then per operation:
--   create: url, event types (space-separated), sealed secret, timeout ms, start cursor, concurrency
--   update: action (enable, disable, rotate_secret), sealed secret (rotate_secret only)
--   delete: -
--   replay: cursor to deliver after
--   fail:   generation it failed under, last error code, failing since (ms)
-- Returns {'OK'}, or {'NOT_FOUND'}; fail returns {'STALE'} when the subscription changed since.
local op, base, id = ARGV[1], cjson.decode(ARGV[2]), ARGV[3]
local entry = {type = 'webhook.' .. op, outcome = op, reason = '', webhook_id = id}
if op == 'create' then
  redis.call('HSET', KEYS[2], 'url', ARGV[4], 'types', ARGV[5], 'secret', ARGV[6], 'timeout_ms', ARGV[7],
    'cursor', ARGV[8], 'concurrency', ARGV[9], 'enabled', '1', 'created_ms', NOW, 'gen', 1)
  redis.call('SADD', KEYS[1], id)
  entry.type = 'webhook.created'
  entry.outcome = 'created'
  audit(KEYS[3], base, entry)
  return {'OK'}
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'NOT_FOUND'} end
if op == 'fail' then
  if redis.call('HGET', KEYS[2], 'gen') ~= ARGV[4] or redis.call('HEXISTS', KEYS[2], 'failing_ms') == 1 then
    return {'STALE'}
  end
  redis.call('HSET', KEYS[2], 'failing_ms', ARGV[6], 'last_error', ARGV[5])
  entry.type = 'webhook.failing'
  entry.outcome = 'failing'
  entry.last_error = ARGV[5]
  audit(KEYS[3], base, entry)
  return {'OK'}
end
redis.call('HINCRBY', KEYS[2], 'gen', 1)
if op == 'delete' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[1], id)
  entry.type = 'webhook.deleted'
  entry.outcome = 'deleted'
elseif op == 'replay' then
  redis.call('HSET', KEYS[2], 'cursor', ARGV[4])
  redis.call('HDEL', KEYS[2], 'failing_ms', 'first_failure_ms', 'last_error')
  entry.type = 'webhook.replayed'
  entry.outcome = 'replayed'
else
  local action = ARGV[4]
  if action == 'enable' then
    -- Enabling a failing subscription retries it from its cursor, with a new retry period.
    redis.call('HSET', KEYS[2], 'enabled', '1')
    redis.call('HDEL', KEYS[2], 'failing_ms', 'first_failure_ms', 'last_error')
  elseif action == 'disable' then
    redis.call('HSET', KEYS[2], 'enabled', '0')
  else
    redis.call('HSET', KEYS[2], 'secret', ARGV[5])
  end
  entry.type = 'webhook.updated'
  entry.outcome = action
end
audit(KEYS[3], base, entry)
return {'OK'}
