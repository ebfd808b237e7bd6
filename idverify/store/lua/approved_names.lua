-- Records the short names and brands a tenant approves for an organization account, replacing
-- those approved before, with its audit entry. The names join the organization's verified names
-- in the index (never downgrading one: a verified form stays verified).
-- KEYS: account, organization name index, audit log
-- ARGV: request json, the tenant's claim assurance, how many names, the names' hashes (hex),
--   then the hashes of every substring of two characters or more of the names
-- Returns {'OK', approved count} or {refusal}: NOT_BOUND, NOT_ORGANIZATION, NOT_ESTABLISHED
--   (these tell nothing of other organizations and are not audited), NAME_TAKEN (one of the
--   names is, or contains, a name another organization holds: approved, it would let this
--   organization's display names carry the other's; audited as a refused names.approved)
local acct = redis.call('HMGET', KEYS[1], 'identity', 'kind', 'assurance', 'name_tag', 'audit')
if not acct[1] then return {'NOT_BOUND'} end
if acct[2] ~= 'organization' then return {'NOT_ORGANIZATION'} end
local tag = acct[4] or ''
local _, own_prefix = org_name_keys(KEYS[1])
local own_key = own_prefix .. tag
if (ASSURANCE_RANK[acct[3] or ''] or 0) < (ASSURANCE_RANK[ARGV[2]] or 99) or tag == ''
    or redis.call('EXISTS', own_key) == 0 then
  return {'NOT_ESTABLISHED'}
end
local names = tonumber(ARGV[3])
local base = cjson.decode(ARGV[1])
base.account = acct[5] or ''
-- Every hash after the count, the names' and their substrings', is checked. HMGET in slices:
-- unpack's stack holds a few thousand.
local first = 4
while first <= #ARGV do
  local last = math.min(first + 999, #ARGV)
  local owners = redis.call('HMGET', KEYS[2], unpack(ARGV, first, last))
  for i = 1, last - first + 1 do
    local holders = owners[i]
    if holders and not string.find(' ' .. holders .. ' ', ' ' .. tag .. ' ', 1, true) then
      -- The refusal tells the admin that some organization holds the name: a read of the
      -- index, audited so that an admin probing names through approvals leaves a trace.
      audit(KEYS[3], base, {type = 'names.approved', outcome = 'refused', reason = 'NAME_TAKEN'})
      return {'NAME_TAKEN'}
    end
  end
  first = last + 1
end
local wanted = {}
for i = 4, 3 + names do wanted[ARGV[i]] = true end
local flat = redis.call('HGETALL', own_key)
for i = 1, #flat, 2 do
  if flat[i + 1] == 'a' and not wanted[flat[i]] then remove_org_name(KEYS[2], own_key, flat[i], tag) end
end
local approved = 0
for hash in pairs(wanted) do
  if redis.call('HGET', own_key, hash) ~= 'v' then
    add_org_name(KEYS[2], own_key, hash, tag, 'a')
    approved = approved + 1
  end
end
audit(KEYS[3], base, {type = 'names.approved', outcome = 'approved', reason = '',
  approved_count = tostring(approved)})
return {'OK', approved}
