-- A re-indexing's step in the new identity's slot once every member's account was visited: the
-- members whose accounts did not follow (move_member.lua answered SKIP: cancelled or erased while
-- the move copied them) leave the record, unless pending ('p:', whose binding's own steps resolve
-- it), and the 'incoming' mark of move_in.lua is cleared, so bindings here count the whole set
-- again. A cancellation's identity step that ran on the old ref after the copy cannot reach the
-- new record (docs/ARCHITECTURE.md, "3.4 Re-indexing"): this is where its place is freed. A record
-- left without members has its erasure queued (NX: a due time moved with it stays), as the
-- cancellation's identity step queues it. Idempotent: a record no longer marked is left as it is.
-- KEYS: new identity, new identity accounts, erasure queue
-- ARGV: old ref, new ref, the erasure's due ms for a record left without members ('': now), then
--   the members whose accounts did not follow (none on one node: the move is one EVAL)
if redis.call('HGET', KEYS[1], 'incoming') ~= ARGV[1] then return {'OK'} end
for i = 4, #ARGV do
  local field = MEMBER_FIELD .. ARGV[i]
  if string.sub(redis.call('HGET', KEYS[1], field) or '', 1, 2) ~= 'p:' then
    redis.call('SREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[1], field)
  end
end
if #ARGV > 3 and redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('ZADD', KEYS[3], 'NX', ARGV[3] ~= '' and ARGV[3] or NOW, 'i:' .. ARGV[2])
end
redis.call('HDEL', KEYS[1], 'incoming')
return {'OK'}
