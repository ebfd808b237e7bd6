-- Deletes a sequenced batch from its bucket's stage stream (issue 26): the records one read
-- returned and one committed audit_sequence.lua step appended, and no other record.
-- 'range' deletes them by range (XTRIM MINID: one command, where XDEL finds each id in its stream
-- node), when the stream shows the range holds the batch and nothing else; else it deletes
-- nothing and answers 'EXACT', and the caller sends the batch's records to 'records'.
-- A batch is what one read returned: the stream's first records (store/audit_stages.py), so
-- when it was read the stream held nothing at or below its last id but the batch. A record
-- added since at or below that id would be deleted unread by the range, and two checks, in the
-- step that trims, rule that out:
-- - the stream's first record is still the batch's first: nothing was put below it (a stream
--   deleted and refilled with lower ids, records staged below the cursor);
-- - the record at the batch's last id is still the one read, field for field. A stream's ids
--   only grow on one node (XADD takes no id at or below the last it generated, and XSETID none
--   below the stream's newest record), so a stream still holding the record that was its newest
--   one read has taken every record since above it. A failover to a replica that lacked the
--   batch's newest records (the way a bucket's stream goes back) loses that record, and what the
--   promoted node stages at or below its id (at its very id too, with other fields) fails this.
-- A writer to Redis who rewrites a stream around these two records may lose records this way, as
-- it may by deleting them.
-- 'records' deletes each record of the batch that the stream still holds as it was read: not one
-- a promoted node staged at a lost record's id.
-- KEYS: the bucket's stage stream
-- ARGV: 'range', the batch's first stream id, its last, the least id above the last (the range's
--   end), then the last record's fields and values as the read returned them (a dict's);
--   or 'records', then for each record its stream id, how many fields and values follow, those
-- Returns {'RANGE', records deleted} or {'EXACT'} (nothing deleted), or for 'records' the number
-- of records deleted.

-- Whether a record's fields (XRANGE's flat list) are what the read returned of them: the n/2
-- pairs of ARGV from at, the reply's fields and values as a dict (a field written twice, as a
-- planted record may be, counted once, with its last value).
local function read_as(fields, at, n)
  local stored, distinct = {}, 0
  for i = 1, #fields - 1, 2 do
    if stored[fields[i]] == nil then distinct = distinct + 1 end
    stored[fields[i]] = fields[i + 1]
  end
  if distinct * 2 ~= n then return false end
  for i = at, at + n - 1, 2 do
    if stored[ARGV[i]] ~= ARGV[i + 1] then return false end
  end
  return true
end

if ARGV[1] == 'records' then
  local deleted, at = 0, 2
  while at <= #ARGV do
    local id, n = ARGV[at], tonumber(ARGV[at + 1])
    local record = redis.call('XRANGE', KEYS[1], id, id)[1]
    if record and read_as(record[2], at + 2, n) then deleted = deleted + redis.call('XDEL', KEYS[1], id) end
    at = at + 2 + n
  end
  return deleted
end

local first, last, above = ARGV[2], ARGV[3], ARGV[4]
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if not head or head[1] ~= first then return {'EXACT'} end
local tail = redis.call('XRANGE', KEYS[1], last, last)[1]
if not tail or not read_as(tail[2], 5, #ARGV - 4) then return {'EXACT'} end
return {'RANGE', redis.call('XTRIM', KEYS[1], 'MINID', above)}
