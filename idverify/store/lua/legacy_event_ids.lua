-- `idverify migrate legacy`, one page of a tenant's accounts: each account's field of the legacy
-- events:acct map (audit pseudonym -> sealed id, written by builds of main before the id moved
-- into the account, docs/ARCHITECTURE.md "Events") moved into the account's own event_account,
-- as the prelude's event_account_of moves it on touch, and deleted from the map. An account that
-- holds its own id keeps it (the map's copy is an older build's, of the same account) and the
-- map's goes. The map is keyed by the audit pseudonym, which only a key leads to from the map's
-- side: walking the accounts, whose hashes name theirs (field audit), needs none.
-- The page's counts and the cursor after it go into the run's record in the same step.
-- KEYS: the run's record, the legacy map, then the page's account keys
-- ARGV: the scan's cursor after this page, the run's phase after it (the next one after the last)
-- Replies: {accounts read, ids moved, ids dropped (the account held its own)}
local run, map = KEYS[1], KEYS[2]
local accounts, moved, dropped = 0, 0, 0
for i = 3, #KEYS do
  local row = redis.call('HMGET', KEYS[i], 'audit', 'event_account')
  if row[1] then
    accounts = accounts + 1
    local kept = redis.call('HGET', map, row[1])
    if kept then
      if row[2] then
        dropped = dropped + 1
      else
        redis.call('HSET', KEYS[i], 'event_account', kept)
        moved = moved + 1
      end
      redis.call('HDEL', map, row[1])
    end
  end
end
redis.call('HINCRBY', run, 'ids_moved', moved)
redis.call('HINCRBY', run, 'ids_dropped', dropped)
redis.call('HSET', run, 'cursor', ARGV[1], 'phase', ARGV[2])
return {accounts, moved, dropped}
