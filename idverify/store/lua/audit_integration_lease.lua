-- Takes, renews or gives back the lease to integrate a tenant's audit log, so that one worker
-- folds its rounds while the others only check the lease. The lease is a token with a TTL: a
-- worker killed while holding it loses it within that TTL, and another takes it. Nothing but
-- CPU depends on it: a round is safe whoever runs it (audit_integrate.lua's check-and-set).
-- KEYS: the lease (string)
-- ARGV: 'hold' or 'give', the worker's token, lease ms (hold)
-- Returns 1 when the caller holds the lease now (hold) or has given it back (give), 0 when
-- another worker holds it.
local holder = redis.call('GET', KEYS[1])
if ARGV[1] == 'give' then
  if holder == ARGV[2] then redis.call('DEL', KEYS[1]) end
  return 1
end
if holder and holder ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
