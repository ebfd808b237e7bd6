-- A re-indexing's last step, in the old identity's slot: the record marked by move_out.lua leaves
-- a forwarding record ('moved_to', 'binding_was', for the verifications that looked it up before
-- a pepper move) or nothing, its members' set and its erasure's queue member go, and the intent is
-- removed. Idempotent: a record no longer marked for this move is left as it is.
-- KEYS: old identity, old identity accounts, erasure queue, intents, the intent's record
-- ARGV: old ref, new ref, forwarding record lifetime ms ('0': none), the name binding it had
if redis.call('HGET', KEYS[1], 'moving_to') == ARGV[2] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], 'i:' .. ARGV[1])
  if tonumber(ARGV[3]) > 0 then
    redis.call('HSET', KEYS[1], 'moved_to', ARGV[2], 'binding_was', ARGV[4])
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  end
end
redis.call('ZREM', KEYS[4], 'move:' .. redis.sha1hex(ARGV[1]))
redis.call('DEL', KEYS[5])
return {'OK'}
