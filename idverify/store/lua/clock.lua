-- Samples the store's time for a process (idverify/store/clock.py) and keeps the deployment's
-- floor: the latest store time seen while Redis's clock is behind it, after a step back. It is
-- written only then, so a healthy clock costs no write (and a full Redis refuses none here).
-- KEYS: clock floor
-- Returns {store time, Redis's own time} (epoch ms): the store time is NOW (Redis's time or the
-- caller's floor) or the stored floor, whichever is later.
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = math.max(NOW, stored)
if now > REDIS_TIME_MS + 1000 and now > stored then
  redis.call('SET', KEYS[1], string.format('%d', now))
end
return {string.format('%d', now), string.format('%d', REDIS_TIME_MS)}
