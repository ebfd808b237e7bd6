-- A step sequence's last step, in the slot of its first: the durable intent is removed, the
-- sequence being complete. Idempotent.
-- KEYS: intents, the intent's record
-- ARGV: intent member
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return {'OK'}
