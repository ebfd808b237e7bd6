-- SetApprovedNames' step in the tenant's slot (docs/ARCHITECTURE.md, "3.5 The reads followed by
-- one write"): records the short names and brands a tenant approves for an organization account,
-- replacing those approved before, with its audit entry, for the account's facts as read before
-- it (step by step account_facts.lua in the account's bucket, on one node approved_names.lua in
-- the same script). The names join the organization's verified names in the index (never
-- downgrading one: a verified form stays verified). The organization must hold verified ('v')
-- names here: a cancellation of its last account drops them (drop_names.lua), so an approval read
-- before that cancellation and arriving after it is refused, and adds no name back.
-- KEYS: organization name index, orgnames:<the name tag as read>, audit log
-- ARGV: request json, the tenant's claim assurance, how many names, the names' hashes (hex), the
--   hashes of every substring of two characters or more of the names, then the account as read,
--   last (so that one node's script appends it to its own arguments): bound ('1' or ''), kind,
--   assurance, name tag, audit pseudonym
-- Returns {'OK', approved count} or {refusal}: NOT_BOUND, NOT_ORGANIZATION, NOT_ESTABLISHED
--   (these tell nothing of other organizations and are not audited), NAME_TAKEN (one of the
--   names is, or contains, a name another organization holds: approved, it would let this
--   organization's display names carry the other's; audited as a refused names.approved)
local facts = #ARGV - 4  -- where the account's facts begin
if ARGV[facts] ~= '1' then return {'NOT_BOUND'} end
if ARGV[facts + 1] ~= 'organization' then return {'NOT_ORGANIZATION'} end
local tag = ARGV[facts + 3]
local own = tag ~= '' and redis.call('HGETALL', KEYS[2]) or {}
local verified = false
for i = 2, #own, 2 do
  if own[i] == 'v' then verified = true break end
end
if (ASSURANCE_RANK[ARGV[facts + 2]] or 0) < (ASSURANCE_RANK[ARGV[2]] or 99) or not verified then
  return {'NOT_ESTABLISHED'}
end
local first = 4
local names = tonumber(ARGV[3])
local base = cjson.decode(ARGV[1])
base.account = ARGV[facts + 4]
-- Every hash after the count, the names' and their substrings', is checked. HMGET in slices:
-- unpack's stack holds a few thousand.
local from = first
while from < facts do
  local last = math.min(from + 999, facts - 1)
  local owners = redis.call('HMGET', KEYS[1], unpack(ARGV, from, last))
  for i = 1, last - from + 1 do
    local holders = owners[i]
    if holders and not string.find(' ' .. holders .. ' ', ' ' .. tag .. ' ', 1, true) then
      -- The refusal tells the admin that some organization holds the name: a read of the
      -- index, audited so that an admin probing names through approvals leaves a trace.
      audit(KEYS[3], base, {type = 'names.approved', outcome = 'refused', reason = 'NAME_TAKEN'})
      return {'NAME_TAKEN'}
    end
  end
  from = last + 1
end
local wanted = {}
for i = first, first + names - 1 do wanted[ARGV[i]] = true end
for i = 1, #own, 2 do
  if own[i + 1] == 'a' and not wanted[own[i]] then remove_org_name(KEYS[1], KEYS[2], own[i], tag) end
end
local approved = 0
for hash in pairs(wanted) do
  if redis.call('HGET', KEYS[2], hash) ~= 'v' then
    add_org_name(KEYS[1], KEYS[2], hash, tag, 'a')
    approved = approved + 1
  end
end
audit(KEYS[3], base, {type = 'names.approved', outcome = 'approved', reason = '',
  approved_count = tostring(approved)})
return {'OK', approved}
