-- Reads the stored IP labels of many accounts (a timeline renders hundreds at once).
-- KEYS: accounts (all in the tenant's slot)
-- ARGV: the field names of a label's parts, ip_display first
-- Returns, per key: the label's encoded IpLocation; for a label stored without one, an array of
-- its field values (false where absent); false when the account has no label.
-- One HGET a key: reading the wire form's time beside it, to catch a label an earlier version
-- updated during a rolling upgrade, took a large share of this script's time in Redis and no
-- release needs it (docs/ARCHITECTURE.md, docs/PERFORMANCE.md).
local rows = {}
for i, key in ipairs(KEYS) do
  local wire = redis.call('HGET', key, 'ip_wire')
  if wire then
    rows[i] = wire
  else
    local row = redis.call('HMGET', key, unpack(ARGV))
    if row[1] then rows[i] = row else rows[i] = false end
  end
end
return rows
