-- CheckDisplayName's one round trip: counts the call against the client's window, reads what
-- the verdict needs about the account, and looks up every substring's keyed hash in the index
-- of verified organization names. Nothing is written but the counter.
-- KEYS: account, organization name index, the client's call counter
-- ARGV: calls allowed per window, window ms, then the substrings' hashes (hex)
-- Returns {'LIMIT', ms left} or {'OK', bound, kind, assurance, name tag, names indexed, then per
--   hit: position in ARGV's hashes (from 1), owners' tags, the account's own kind of it or ''}
local calls = redis.call('INCR', KEYS[3])
if calls == 1 then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2])) end
if calls > tonumber(ARGV[1]) then return {'LIMIT', redis.call('PTTL', KEYS[3])} end
local acct = redis.call('HMGET', KEYS[1], 'identity', 'kind', 'assurance', 'name_tag')
local tag = acct[4] or ''
local _, own_prefix = org_name_keys(KEYS[1])
local own_key = own_prefix .. tag
local indexed = tag ~= '' and redis.call('EXISTS', own_key) == 1
local reply = {'OK', acct[1] and '1' or '', acct[2] or '', acct[3] or '', tag, indexed and '1' or ''}
local count = #ARGV - 2
if count == 0 then return reply end
local owners = redis.call('HMGET', KEYS[2], unpack(ARGV, 3, #ARGV))
for i = 1, count do
  local holders = owners[i]
  if holders then
    local own = ''
    if indexed and string.find(' ' .. holders .. ' ', ' ' .. tag .. ' ', 1, true) then
      own = redis.call('HGET', own_key, ARGV[i + 2]) or ''
    end
    reply[#reply + 1] = tostring(i)
    reply[#reply + 1] = holders
    reply[#reply + 1] = own
  end
end
return reply
