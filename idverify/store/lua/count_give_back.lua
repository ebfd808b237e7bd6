-- Gives back the counts a counter step spent for a call that another slot's step refused
-- (docs/ARCHITECTURE.md, "3.6 Counters in two slots"). Never below zero, and a counter given back
-- to zero is deleted, as if never counted, so that its next count starts a window of its own.
-- With a token, once per token: a retried give-back finds its marker (kept as long as the longest
-- of the counters' windows, at least a second) and gives nothing back twice. A counter whose
-- window is not the one the count was made in (its end more than a second from the end the step
-- answered: a later window starts a whole window after) is left alone: the count went with its
-- window, and taking one from the next would let a call past that window's limit.
-- KEYS: the token's marker (in the counters' slot), then each counter the step spent
-- ARGV: token ('' on one node, inside the script that counted: no retry can repeat it, no window
--   can end between), then each counter's window end as the step answered it (Redis's ms)
-- Returns {'OK'} | {'DONE'} (this token's give-back was made before)
if ARGV[1] ~= '' then
  local ttl = 1000
  for i = 2, #KEYS do ttl = math.max(ttl, redis.call('PTTL', KEYS[i])) end
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ttl) then return {'DONE'} end
end
for i = 2, #KEYS do
  local counted_end = tonumber(ARGV[i] or '')
  local same_window = not counted_end or math.abs(REDIS_TIME_MS + redis.call('PTTL', KEYS[i]) - counted_end) <= 1000
  if same_window then
    if tonumber(redis.call('GET', KEYS[i]) or '0') <= 1 then
      redis.call('DEL', KEYS[i])
    else
      redis.call('DECR', KEYS[i])
    end
  end
end
return {'OK'}
