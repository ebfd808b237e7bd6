-- A binding's second step, in the identity's slot (docs/ARCHITECTURE.md, "3.1 Binding"): whether
-- the account takes a place, decided from the identity's keys alone (place_member in the prelude:
-- the claim rules, the limit counted over 'b:' and 'p:' members, a claim established). A new
-- place is the pending member 'p:<tag>:<vf id>' (in the set too, where 0.1.0 counts it), which
-- the confirm (bind_confirm.lua) turns into 'b:<tag>' or removes. Step by step, the decision is
-- kept in the intent 'place:<vf id>' (removed by the confirm): a repeat answers it again, so a
-- repair writes the entries and supersessions of the first decision, and a place whose account's
-- steps were lost is found and resolved by the repairer.
-- KEYS: identity, identity accounts, intents, the intent's record (chained on one node: the intents
--   alone, read for the pending members' intents, and none is written)
-- ARGV: binding limit, the intent's delay in ms ('': write none), request json, then the account
--   step's reply (binding_inputs)
-- Replies: {decision, reason, name tag, establishes, counted ('1'/'': the refusal is counted
--   against the name's claim refusals, bind_count.lua), established ('1'/''),
--   superseded members, tagged members (each space-separated), names (the organization's names
--   to index once the commit binds, bind_names.lua; '' none), planted (how many pending members
--   without their intents it removed, for the caller to log; absent from a kept decision)}:
--   decision PLACED, AGAIN or REFUSED (place_member); {'MOVED'} the identity moved since the
--   account's step; {'RETRY'} a move of it is in flight (the caller waits, and places again);
--   {'UNWALKED', n} a bucket's identity has n members without their fields (below).
if KEYS[4] and redis.call('HGET', KEYS[4], 'kind') == 'place' then
  local kept = redis.call('HMGET', KEYS[4], 'decision', 'reason', 'name_tag', 'establishes', 'counted',
    'established', 'superseded', 'tagged', 'names')
  for i = 1, #kept do kept[i] = kept[i] or '' end
  return kept
end
local vf = binding_of(ARGV, 4)
-- The one check of the identity's moves step by step: the account's step before this one reads no
-- identity (its keys are the account's bucket's alone), so this answers for the whole binding.
-- Its verification is then marked in flight with its 'bind:' intent: the caller waits and places
-- again, or points it anew (bind_repoint.lua) and places it there; a caller that gives up leaves
-- both to a retry of the answer or to the repairer, which finish it the same way.
local moved = identity_move_reply(KEYS[1], vf)
if moved then return moved end
-- A member 0.1.0 bound has no 'm:' field, and identity_members() reads its account's name_tag
-- to write one: an account key named from the identity's, the tenant's slot while both are there.
-- In a bucket's tag ('{t:T:<n>}') that name would be the identity's bucket, not the account's, and
-- read as absent (the member counted untagged): a bucketed tenant was walked before its records
-- moved (`idverify migrate legacy`, docs/ARCHITECTURE.md §6), so such a member is refused here,
-- before anything is written, never guessed.
local acct_prefix = nil
if string.match(KEYS[1], '^iv1:{t:[^:}]*}:') then
  acct_prefix = string.sub(KEYS[1], 1, #KEYS[1] - #vf.identity - #'id:') .. 'acct:'
else
  local unwalked = 0
  for _, value in pairs(member_fields(KEYS[1], KEYS[2])) do
    if not value then unwalked = unwalked + 1 end
  end
  if unwalked > 0 then return {'UNWALKED', tostring(unwalked)} end
end
local d = place_member(KEYS[1], KEYS[2], KEYS[3], acct_prefix, vf, ARGV[1])
-- A refusal counts against its name's claim refusals only under a tag (bind_count.lua). A place
-- taken by a verification that establishes its claim indexes its organization's names, once
-- bound (bind_names.lua): kept here, in the intent, so that a repair after the commit has them.
local counted = d.counted and vf.name_tag ~= ''
local names = d.decision ~= 'REFUSED' and vf.establishes == '1' and (vf.name_tag or '') ~= ''
  and vf.org_names or ''
local reply = {d.decision, d.reason, vf.name_tag, vf.establishes, counted and '1' or '',
  d.established and '1' or '', table.concat(d.superseded, ' '), table.concat(d.tagged, ' '), names,
  tostring(d.planted)}
if ARGV[2] ~= '' then
  local member = 'place:' .. vf.id
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], 'kind', 'place', 'subject', vf.id, 'acct', vf.acct, 'ref', vf.identity,
    'request', ARGV[3], 'method', vf.method, 'decision', reply[1], 'reason', reply[2], 'name_tag', reply[3],
    'establishes', reply[4], 'counted', reply[5], 'established', reply[6], 'superseded', reply[7],
    'tagged', reply[8], 'names', reply[9])
  redis.call('ZADD', KEYS[3], NOW + tonumber(ARGV[2]), member)
end
return reply
