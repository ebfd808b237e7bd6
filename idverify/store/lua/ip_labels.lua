-- Reads the stored IP labels of many accounts (a timeline renders hundreds at once), and
-- records the read of those that have one, on one node: the labels read, then the accounting
-- (reads_record.lua, a function composed before this body by scripts.py), as a Cluster runs
-- them in two round trips (docs/ARCHITECTURE.md, "3.5 The reads followed by one write").
-- KEYS: accounts (all in the tenant's slot)
-- ARGV: the read spec (READ_SPEC_SIZE values), then the field names of a label's parts,
--   ip_display first
-- Returns, per key: the label's encoded IpLocation; for a label stored without one, an array of
-- its field values (false where absent); false when the account has no label.
-- One HMGET a key, the label's wire form with the account's identity ref: reading the wire
-- form's time beside it, to catch a label an earlier version updated during a rolling upgrade,
-- took a large share of this script's time in Redis and no release needs it
-- (docs/ARCHITECTURE.md, docs/PERFORMANCE.md).
local fields = {unpack(ARGV, READ_SPEC_SIZE + 1)}
local base = string.match(KEYS[1], '^(.-}:)acct:')
local skip = #base + #'acct:'
local rows, accounts, identities = {}, {}, {}
for i, key in ipairs(KEYS) do
  local found = redis.call('HMGET', key, 'ip_wire', 'identity')
  local row = found[1]
  if not row then
    row = redis.call('HMGET', key, unpack(fields))
    if not row[1] then row = false end
  end
  rows[i] = row
  if row then
    accounts[#accounts + 1] = string.sub(key, skip + 1)
    identities[#identities + 1] = found[2] or ''
  end
end
reads_record({base .. 'readmin:open', base .. 'readmin:erased'}, recorded_args(1, accounts, identities))
return rows
