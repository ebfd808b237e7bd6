-- Reads the stored IP labels of many accounts (a timeline renders hundreds at once), and
-- records the read of those that have one (record_reads in the prelude), in one script on one node;
-- step by step the labels are plain reads, then reads_record.lua (store/read_steps.py).
-- KEYS: accounts (all in the tenant's slot)
-- ARGV: the read spec (READ_SPEC_SIZE values), then the field names of a label's parts,
--   ip_display first
-- Returns, per key: the label's encoded IpLocation; for a label stored without one, an array of
-- its field values (false where absent); false when the account has no label.
-- One HMGET a key, the label's wire form with the account's identity ref: reading the wire
-- form's time beside it, to catch a label an earlier version updated during a rolling upgrade,
-- took a large share of this script's time in Redis and no release needs it
-- (docs/ARCHITECTURE.md, docs/PERFORMANCE.md).
local spec = read_spec(ARGV, 1)
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
    if found[2] then identities[#identities + 1] = found[2] end
  end
end
record_reads(base, spec, accounts, identities)
return rows
