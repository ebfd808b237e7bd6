-- A binding's third step, in the slot of each account it supersedes (docs/ARCHITECTURE.md, "3.1
-- Binding"; only when the identity's step established a claim): a member of another name loses
-- its binding (supersede_account: binding.superseded under its own audit pseudonym), a member of
-- this name bound untagged by 0.1.0 gets its tag. The identity's halves of both were done by
-- the identity's step. Idempotent: an account no longer bound to the identity is left alone.
-- KEYS: audit log, then the account of each member named below, in order (superseded, then tagged)
-- ARGV: request json, verification id, method, identity ref, the claim's tag, superseded members,
--   tagged members (each space-separated)
-- Replies: {'OK'}
local base = cjson.decode(ARGV[1])
base.verification_id = ARGV[2]
base.method = ARGV[3]
local i = 1
for _ in string.gmatch(ARGV[6], '%S+') do
  i = i + 1
  supersede_account(KEYS[i], ARGV[4], KEYS[1], base)
end
for _ in string.gmatch(ARGV[7], '%S+') do
  i = i + 1
  if redis.call('HGET', KEYS[i], 'identity') == ARGV[4] then redis.call('HSET', KEYS[i], 'name_tag', ARGV[5]) end
end
return {'OK'}
