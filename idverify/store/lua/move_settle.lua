-- A re-indexing's step in the new identity's slot once every member's account points to it: the
-- 'incoming' mark of move_in.lua is cleared, so bindings here count the whole set again.
-- Idempotent.
-- KEYS: new identity
-- ARGV: old ref
if redis.call('HGET', KEYS[1], 'incoming') == ARGV[1] then redis.call('HDEL', KEYS[1], 'incoming') end
return {'OK'}
