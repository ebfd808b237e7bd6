-- Stores a newly signed tree head, unless another process stored one since the caller read it.
-- Every replica hands out the stored head while it is fresh and signs a new one no older than
-- it (in size and time); this check-and-set keeps the stored head moving forward only, so
-- callers switching between workers and replicas never see a head go back.
-- KEYS: tree head
-- ARGV: the checkpoint read before signing ('' when none), then the new checkpoint, key id, signature
local current = redis.call('HGET', KEYS[1], 'head_checkpoint') or ''
if current ~= ARGV[1] then return {'CONFLICT'} end
redis.call('HSET', KEYS[1], 'head_checkpoint', ARGV[2], 'head_key_id', ARGV[3], 'head_signature', ARGV[4])
return {'OK'}
