-- Reads the stored IP labels of many accounts (a timeline renders hundreds at once).
-- KEYS: accounts (all in the tenant's slot)
-- ARGV: the field names of a label's parts, ip_display first
-- Returns, per key: the label's encoded IpLocation; for a label without one, an array of its
-- field values (false where absent); false when the account has no label.
-- The encoded form counts only if it was written with the label's time: a worker of an earlier
-- version (during a rolling upgrade) updates the parts and leaves the encoded form behind.
local rows = {}
for i, key in ipairs(KEYS) do
  local wire = redis.call('HMGET', key, 'ip_wire', 'ip_wire_ms', 'ip_ms')
  if wire[1] and wire[2] == wire[3] then
    rows[i] = wire[1]
  else
    local row = redis.call('HMGET', key, unpack(ARGV))
    if row[1] then rows[i] = row else rows[i] = false end
  end
end
return rows
