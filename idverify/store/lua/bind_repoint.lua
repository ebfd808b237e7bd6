-- A binding whose identity moved between its account's step and its place (docs/ARCHITECTURE.md,
-- "3.1 Binding"), in the account's slot: the verification in flight is pointed at where its
-- identity lives now (its ref and sealed bindings, as the caller computed them from the move's
-- forwarding record or the current key), and its intent 'bind:<vf id>' names the new ref with it,
-- so that a repair after a crash here still finds the verification as the intent says. Only if
-- every field still holds what the caller read, and the verification is still in flight.
-- KEYS: verification, the intent's record
-- ARGV: changes json {field: [value read, new value]}
-- Replies: {'BINDING', binding_inputs...} pointed (the place runs on the new ref); {'CHANGED'} the
--   verification changed, or is no longer in flight.
local vf = hgetall(KEYS[1])
if vf.binding ~= '1' then return {'CHANGED'} end
local changes = cjson.decode(ARGV[1])
for field, pair in pairs(changes) do
  if (vf[field] or '') ~= pair[1] then return {'CHANGED'} end
end
for field, pair in pairs(changes) do
  redis.call('HSET', KEYS[1], field, pair[2])
  vf[field] = pair[2]
end
if redis.call('HGET', KEYS[2], 'kind') == 'bind' then redis.call('HSET', KEYS[2], 'ref', vf.identity) end
return binding_inputs(vf)
