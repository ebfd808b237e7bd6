-- A re-indexing's step in the new identity's slot once every member's account was visited: the
-- members whose accounts did not follow (move_member.lua answered SKIP: cancelled or erased while
-- the move copied them) leave the record, unless pending ('p:', whose binding's own steps resolve
-- it), and the 'incoming' mark of move_in.lua is cleared, so bindings here count the whole set
-- again. A cancellation's identity step on the old ref leaves the marked record as the move read
-- it (MOVING) or finds it gone (GONE) and cannot reach the new record (docs/ARCHITECTURE.md, "3.4
-- Re-indexing"): this is where its place is freed, and where the identity's last member is known,
-- since after a merge only this record holds the members of both refs. A record this leaves
-- without members has its erasure queued (NX: a due time moved with it stays), and answers LAST
-- with the claim tags of the members it dropped, as the cancellation's identity step would have:
-- the organization's names go next (drop_names.lua), which that step, answering MOVING or GONE
-- on the old ref, never leads to. So does a record without members that holds a cancellation's
-- LAST word (LAST_FIELD, carried from either ref by move_in.lua): that cancellation left a record
-- empty and its names' step may never have run (its worker killed, and its repair finding GONE
-- here once the move is done); the word's tags join the reply. Idempotent: a record no longer
-- marked is left as it is; a repair after this step runs move_in.lua again first, which marks it
-- and copies the dropped members and the words back, so this step finds them again and answers
-- LAST again.
-- KEYS: new identity, new identity accounts, erasure queue
-- ARGV: old ref, new ref, the erasure's due ms for a record left without members ('': now), then
--   the members whose accounts did not follow (none on one node: the move is one EVAL)
-- Replies: {'OK'} settled; {'LAST', claim tag...} settled, and no member is left of those it
--   dropped here or of a cancellation whose word it holds (their distinct tags, sorted; none for
--   members without a field or a tag).
if redis.call('HGET', KEYS[1], 'incoming') ~= ARGV[1] then return {'OK'} end
local tags = {}
for i = 4, #ARGV do
  local field = MEMBER_FIELD .. ARGV[i]
  local value = redis.call('HGET', KEYS[1], field) or ''
  if string.sub(value, 1, 2) ~= 'p:' then
    redis.call('SREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[1], field)
    local tag = member_parts(value)
    if tag ~= '' then tags[tag] = true end
  end
end
redis.call('HDEL', KEYS[1], 'incoming')
if redis.call('SCARD', KEYS[2]) > 0 then return {'OK'} end
local words = last_tags(KEYS[1])
if #ARGV == 3 and next(words) == nil then return {'OK'} end
if #ARGV > 3 then redis.call('ZADD', KEYS[3], 'NX', ARGV[3] ~= '' and ARGV[3] or NOW, 'i:' .. ARGV[2]) end
for tag in pairs(words) do tags[tag] = true end
local reply = sorted_members(tags)
table.insert(reply, 1, 'LAST')
return reply
