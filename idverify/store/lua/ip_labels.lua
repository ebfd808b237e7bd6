-- Reads the stored IP labels of many accounts (a timeline renders hundreds at once) as one
-- JSON reply: a reply per key costs the client far more to parse than the lookups cost here.
-- KEYS: accounts (all in the tenant's slot)
-- ARGV: the field names to read
-- Returns a JSON array with, per key, an array of the field values (false where absent), or
-- false when the account has no label.
local rows = {}
for i, key in ipairs(KEYS) do
  local row = redis.call('HMGET', key, unpack(ARGV))
  if row[1] then rows[i] = row else rows[i] = false end
end
return cjson.encode(rows)
