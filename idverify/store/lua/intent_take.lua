-- The repairer takes a due intent (flows/bucket_repair.py): a check-and-set on its score, pushed
-- forward so that another repairer leaves it alone while this one finishes it, and the check of
-- what the sequence's first step recorded, as that step would see it. It only finishes what step
-- 1 recorded: an intent planted by someone with write access to Redis, or one malformed, is
-- removed, never acted on. An 'unbind' intent needs its account cancelled and unbound (and so
-- existing); an 'erase' intent needs its account gone, as the erasure's first step left it. A
-- 'bind' intent needs its verification in flight for its account and identity, as the binding's
-- account step left it; a 'place' intent is resolved by its verification's outcome, read before
-- in the account's bucket (bind_outcome.lua) and given here (place_take). A 'move' intent needs
-- its old identity record still marked as moving to the intent's new ref.
-- KEYS: intents, the intent's record, then the account it names, or for a 'bind' its
--   verification, or for a move's its old identity record (any key of the slot when it names
--   none); for a 'place' nothing more: every key here is the identity's bucket's
-- ARGV: intent member, its score as read, the delay in ms before it may be taken again; for a
--   'place', then bind_outcome.lua's answer and the account and ref it was read for
-- Replies: {'TAKEN', ref, claim tag, due ms} an unbind; {'TAKEN'} an erase; {'TAKEN', request,
--   limit, binding_inputs...} a bind; {'TAKEN', account, 'VERIFIED' or 'REJECTED', request, method,
--   ref, claim tag, names} a place (names: the organization's names its place kept, '' none);
--   {'TAKEN', old ref, new ref, record as read json, move json} a move;
--   {'ENDED', account} a bind whose verification was ended meanwhile; {'PENDING'} a place whose
--   verification has not ended (taken, nothing to do yet);
--   {'RACED'} its score moved (another repairer took it, or its sequence finished), or a place's
--   intent no longer names what its outcome was read for; {'DROPPED', why} refused and removed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return {'RACED'} end
local function drop(why)
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return {'DROPPED', why}
end
local kind, subject = string.match(ARGV[1], '^([a-z]+):(.+)$')
local KINDS = {unbind = true, erase = true, bind = true, place = true, move = true}
if not KINDS[kind] then return drop('UNKNOWN_KIND') end
local intent = hgetall(KEYS[2])
if intent.kind ~= kind or intent.subject ~= subject then return drop('MALFORMED') end
local taken = NOW + tonumber(ARGV[3])
-- A 'place' runs the confirm under how its verification ended, once its 'bind' is done: VERIFIED
-- makes the pending member 'b:', anything else removes it. The outcome was read in the account's
-- bucket before this script (bind_outcome.lua), so it may be stale here, and more so by the time
-- the confirm runs (as this script's own read was before the read moved out). It is safe because
-- an outcome the read acts on never changes for this verification: VERIFIED and REJECTED are a
-- verification's last statuses (nothing writes one again but its erasure, which deletes it); a
-- verification gone stays gone (its id is 128 random bits: only a writer to Redis brings it back,
-- who could write the member too); and an account read as bound to this identity with it gone
-- was bound by this verification's commit or by another of the same account, whose own place
-- replaced this one's value. What may still change is only the account leaving the identity (a
-- cancellation, a supersession), which removes the member itself in the identity's bucket, and
-- the confirm acts only on 'p:<tag>:<this vf id>' (bind_confirm.lua), so it never re-adds it. The
-- names a VERIFIED place indexes first (bind_names.lua) may so come after that account's
-- cancellation dropped them: the confirm then finds the record without members and answers LAST,
-- and they are dropped again.
-- Every live verification waits ('LIVE': PENDING), the marked and the unmarked alike: one not
-- marked in flight (its account's step lost in a failover) may be answered and marked after the
-- read, and freeing its place then would let its commit bind the account with no member counted.
-- It waits at most until it ends or its session's TTL takes it. An intent whose account or ref
-- changed since the read answers RACED, and the next round reads again.
local function place_take()
  if ARGV[5] ~= intent.acct or ARGV[6] ~= intent.ref then return {'RACED'} end
  redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
  if ARGV[4] == 'LIVE' then return {'PENDING'} end
  local status = ARGV[4] == 'VERIFIED' and 'VERIFIED' or 'REJECTED'
  return {'TAKEN', intent.acct, status, intent.request, intent.method or '', intent.ref,
    intent.name_tag or '', intent.names or ''}
end
-- A binding's intents (store/binding_steps.py): 'bind' resumes from the identity's step, only for
-- a verification its account's step marked; 'place' is place_take's.
local function binding_take()
  if (intent.acct or '') == '' or (intent.ref or '') == '' or string.sub(intent.request or '', 1, 1) ~= '{' then
    return drop('MALFORMED')
  end
  if kind == 'place' then return place_take() end
  local vf = hgetall(KEYS[3])
  local ended = vf.status == 'VERIFIED' or vf.status == 'REJECTED' or vf.status == 'EXPIRED'
  local in_flight = vf.binding == '1' and vf.status and not ended and vf.acct == intent.acct
    and vf.identity == intent.ref
  if not string.match(intent.limit or '', '^%d+$') then return drop('MALFORMED') end
  -- Ended meanwhile by a cancellation or a withdrawal: the commit only clears the marks.
  if ended and vf.binding == '1' and vf.acct == intent.acct then
    redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
    return {'ENDED', intent.acct}
  end
  if not in_flight then return drop('NOT_BINDING') end
  redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
  return {'TAKEN', intent.request, intent.limit, unpack(binding_inputs(vf))}
end
if kind == 'bind' or kind == 'place' then return binding_take() end
if kind == 'move' then
  -- A re-indexing (move_out.lua): its old record must still be marked for this very move, and
  -- name it by its digest; the reply is what the later steps need, as move_out.lua kept it.
  if (intent.old or '') == '' or (intent.new or '') == '' or redis.sha1hex(intent.old) ~= subject
    or not pcall(cjson.decode, intent.read or '') or not pcall(cjson.decode, intent.move or '') then
    return drop('MALFORMED')
  end
  if redis.call('HGET', KEYS[3], 'moving_to') ~= intent.new then return drop('NOT_MOVING') end
  redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
  return {'TAKEN', intent.old, intent.new, intent.read, intent.move}
end
if kind == 'erase' then
  -- The account still there: its erasure's first step never ran, so nothing is to finish.
  if redis.call('EXISTS', KEYS[3]) == 1 then return drop('NOT_ERASED') end
  redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
  return {'TAKEN'}
end
if (intent.ref or '') == '' or not string.match(intent.due_ms or '', '^%d+$') then
  return drop('MALFORMED')
end
local acct = redis.call('HMGET', KEYS[3], 'cancelled_ms', 'identity')
if not acct[1] then return drop('NOT_CANCELLED') end
if acct[2] then return drop('STILL_BOUND') end
redis.call('ZADD', KEYS[1], 'XX', taken, ARGV[1])
return {'TAKEN', intent.ref, intent.tag or '', intent.due_ms}
