-- CheckDisplayName's step in the tenant's slot (docs/ARCHITECTURE.md, "3.5 The reads followed by
-- one write"): counts the call against the client's window and looks up every substring's keyed
-- hash in the index of verified organization names, for the account's facts as read before it
-- (step by step account_facts.lua in the account's bucket, on one node display_name.lua in the
-- same script). Nothing is written but the counter.
-- KEYS: organization name index, the client's call counter, orgnames:<the name tag as read>
-- ARGV: calls allowed per window, window ms, the substrings' hashes (hex), then the account as
--   read, last (so that one node's script appends it to its own arguments): bound ('1' or ''),
--   kind, assurance, name tag
-- Returns {'LIMIT', ms left} or {'OK', bound, kind, assurance, name tag, names indexed, then per
--   hit: position in the hashes (from 1), owners' tags, the account's own kind of it or ''}
local calls = redis.call('INCR', KEYS[2])
if calls == 1 then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2])) end
if calls > tonumber(ARGV[1]) then return {'LIMIT', redis.call('PTTL', KEYS[2])} end
local facts = #ARGV - 3  -- where the account's facts begin
local tag = ARGV[facts + 3]
local indexed = tag ~= '' and redis.call('EXISTS', KEYS[3]) == 1
local reply = {'OK', ARGV[facts], ARGV[facts + 1], ARGV[facts + 2], tag, indexed and '1' or ''}
local first = 3
local count = facts - first
if count <= 0 then return reply end
local owners = redis.call('HMGET', KEYS[1], unpack(ARGV, first, facts - 1))
for i = 1, count do
  local holders = owners[i]
  if holders then
    local own = ''
    if indexed and string.find(' ' .. holders .. ' ', ' ' .. tag .. ' ', 1, true) then
      own = redis.call('HGET', KEYS[3], ARGV[first + i - 1]) or ''
    end
    reply[#reply + 1] = tostring(i)
    reply[#reply + 1] = holders
    reply[#reply + 1] = own
  end
end
return reply
