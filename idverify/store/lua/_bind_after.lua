-- A binding's steps after the account's, on one node (docs/ARCHITECTURE.md, "3.1 Binding"): the
-- identity's step, the supersessions a claim asks for, a refused claim's count, the commit, an
-- organization's names and the confirm, each given the replies before it as a Cluster's runner
-- gives them (store/binding_steps.py). Scripts.py puts this after the step scripts' functions in
-- the scripts that bind (submit, start, guardian). The keys of the steps in other families here
-- (the count's, the names') are named from the account's key, whose hash tag every key shares on
-- one node.
-- judged: the account's step's reply (binding_inputs); keys: verification, audit log, account,
-- identity, identity accounts, the consent record made lasting once bound (nil: none).
-- Returns the commit's reply.
local function bind_after_account(judged, keys, limit, request)
  local vf_id, acct, ref, method = judged[2], judged[3], judged[4], judged[12]
  local acct_prefix = string.sub(keys[3], 1, #keys[3] - #acct)
  -- The intents, only read: a pending member found here is one that no binding took (none is
  -- pending past this script), unless a step-by-step binding on the same Redis holds its intent.
  local intents_key = (string.gsub(acct_prefix, 'acct:$', 'intents'))
  local placed = bind_place({keys[4], keys[5], intents_key}, {limit, '', request, unpack(judged)})
  if placed[7] ~= '' or placed[8] ~= '' then
    local accounts = {keys[2]}
    for member in string.gmatch(placed[7] .. ' ' .. placed[8], '%S+') do
      accounts[#accounts + 1] = acct_prefix .. member
    end
    bind_supersede(accounts, {request, vf_id, method, ref, placed[3], placed[7], placed[8]})
  end
  if placed[5] == '1' then
    bind_count({string.gsub(acct_prefix, 'acct:$', 'rl:claim_refusals:') .. placed[3]}, {})
  end
  local committed = bind_commit({keys[1], keys[2], keys[3], keys[6]}, {request, unpack(placed)})
  if committed[3] == 'VERIFIED' and placed[9] ~= '' then
    local index_key, own_prefix = org_name_keys(keys[3])
    bind_names({index_key, own_prefix .. placed[3]}, {placed[3], placed[9]})
  end
  bind_confirm({keys[4], keys[5]}, {acct, vf_id, committed[1], committed[3]})
  return committed
end

-- The end of an account's step that may bind in a script of its own (a start in bind mode, a
-- guardian's consent), as bind_judge.lua ends a right answer's: an account bound to another
-- identity is refused here; step by step (a delay given) the verification is marked in flight
-- and the steps after this one are the caller's, whose reply this returns; on one node they run
-- here, and this returns nil.
-- keys: verification, audit log, account, then step by step (delay_ms given) the intents and the
-- intent's record, or on one node the identity and its accounts
local function bind_from_account(keys, vf, base, delay_ms, limit, request)
  local current = redis.call('HGET', keys[3], 'identity')
  if current and current ~= vf.identity then
    finish(keys[1], keys[2], base, vf, 'REJECTED', 'ACCOUNT_BOUND_TO_OTHER_IDENTITY', true)
  elseif (delay_ms or '') ~= '' then
    mark_binding(keys[1], keys[3], keys[4], keys[5], vf, delay_ms, limit, request)
    return binding_inputs(vf)
  else
    bind_after_account(binding_inputs(vf), keys, limit, request)
  end
  return nil
end
