-- Reads a bucket's staged audit records for QueryEvents' pending entries (issue 26), writing
-- nothing. Each record is judged as audit_sequence.lua judges it (the prelude's staged_event), so
-- a query never shows bytes the sequencer would refuse: a planted or corrupt record comes back
-- without its body, and nothing else of a record (its sealed account id, whose, its span: what
-- the outbox takes and no entry holds) ever leaves the script.
-- KEYS: the bucket's stage stream
-- ARGV: how many records to read at most; the least stream id to read from ('' from the first)
-- Returns {more, records}: more 1 when the stream holds a record after the last one returned
-- (the read was cut by its count), else 0; per record {stream id, staged ms, body}, ms and body
-- '' for a record the sequencer would refuse.
local count = tonumber(ARGV[1])
local start = ARGV[2]
if start == '' then
  start = '-'
end
-- One record past the count, never judged: whether the stream goes on after what is returned.
local records = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', count + 1)
local reply = {}
for i = 1, math.min(#records, count) do
  local record = records[i]
  -- The last of a repeated field, as the sequencer's caller reads a record (a dict of its fields).
  local body, ms = '', ''
  local fields = record[2]
  for f = 1, #fields - 1, 2 do
    if fields[f] == 'b' then
      body = fields[f + 1]
    elseif fields[f] == 'ms' then
      ms = fields[f + 1]
    end
  end
  if staged_event(body, ms) then
    reply[i] = {record[1], ms, body}
  else
    reply[i] = {record[1], '', ''}
  end
end
return {#records > count and 1 or 0, reply}
