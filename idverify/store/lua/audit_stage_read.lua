-- Reads a bucket's staged audit records for QueryEvents' pending entries (issue 26), writing
-- nothing. Each record is judged as audit_sequence.lua judges it (the prelude's staged_event), so
-- a query never shows bytes the sequencer would refuse: a planted or corrupt record comes back
-- without its body, and nothing else of a record (its sealed account id, whose, its span: what
-- the outbox takes and no entry holds) ever leaves the script.
-- KEYS: the bucket's stage stream
-- ARGV: how many records to read at most, from the stream's first
-- Returns per record {stream id, staged ms, body}, ms and body '' for a record the sequencer
-- would refuse.
local reply = {}
for i, record in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))) do
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
return reply
