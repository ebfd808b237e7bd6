-- Sequences one bucket's staged audit entries (issue 26): appends them to the tenant's log in
-- stream order, as audit() would have at their numbers and times, and moves the bucket's cursor
-- past them, in one step in the tenant's slot. The cursor is a check-and-set: a batch read below
-- a cursor another process (or this one, before a crash) already moved is refused whole
-- ('CONFLICT', nothing written), so no entry is appended twice; the caller deletes a batch's
-- records from the stage only once this step committed, so none is lost. A record that is not
-- what audit_stage() writes (a body other than the canonical one its own fields give, a forged
-- "seq", a body too long for a bundle, a bad time) is refused alone: not appended, its receipt
-- says so, and the cursor passes it, so one planted record cannot stop the bucket.
-- A *late* batch holds records at or below the cursor that the stream still has: what a crash
-- left between a step and its deletion (sequenced already), or records a promoted node whose
-- clock is behind staged below the cursor after a failover lost the stream's newest ids (never
-- sequenced). Each receipt keeps a digest of its record, so the two are told apart even when a
-- new record takes the id of a lost one: a late record is appended unless a receipt of the same
-- id and digest says it was, and the cursor stays where it is.
-- KEYS: the tenant's audit log, its stage cursors (hash: bucket -> last stream id sequenced),
--   the bucket's receipts (stream: staged stream id -> 'i' its number, or 'r' refused, and 'h'
--   the record's digest; written with pcall, since a receipt stream restored or altered beside
--   the cursor may refuse an id, and a missing receipt only means a position is answered
--   "sequenced" without its number), the tenant's removal record (tenant_removal.lua), the
--   bucket's late receipts (hash: staged stream id -> '<number> <digest>' or 'r <digest>')
-- ARGV: bucket, the cursor the batch was read after ('' for none), the batch's last stream id
--   (the cursor itself for a late batch), then per record its stream id, body, staged ms,
--   sealed account id, whose, span, and last, if the caller gives them, the records' digests in
--   a row (DIGEST_HEX hex digits each, as record_digest computes them; else computed here), then,
--   if it gives them too, its UTF-8 marks: one character a record, in order, '1' where the caller
--   decoded that record's body, the bytes it passes here, as UTF-8 itself (the step then skips
--   its own check), '0' where it did not (the step checks). Each layout is taken (6, 6 + 1 or
--   6 + 2 arguments a batch past the records'), so a worker of an earlier release is served.
-- Returns {'OK', first number, entries appended, refused stream ids...} or {'CONFLICT', cursor}
-- or {'CLOSED', the removal's state} or {'BAD_BATCH', why} (nothing written).
local RECORD_FIELDS = 6
-- Receipts answer "sequenced as which number" for a day; past that a position below the cursor
-- is known sequenced, its number found by a query of its content.
local RECEIPT_KEEP_MS = 86400000

local bucket, expected, last = ARGV[1], ARGV[2], ARGV[3]
-- A log its tenant's removal closed took its last entry ('tenant.removed'): a record staged
-- after the close is never appended behind it, and stays in its stream for the erasure to
-- count and drop. Checked in the step, so a pass racing the close lands wholly before it.
local removal = redis.call('HGET', KEYS[4], 'state')
if removal and removal ~= 'scheduled' then return {'CLOSED', removal} end
local current = redis.call('HGET', KEYS[2], bucket) or ''
if current ~= expected then return {'CONFLICT', current} end

local function stream_id(text)
  local ms, seq = string.match(text or '', '^(%d+)%-(%d+)$')
  return ms, seq
end
-- Decimal strings without leading zeros (Redis writes none) compare by length, then bytes.
local function decimal_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function id_less(a, b)
  local a_ms, a_seq = stream_id(a)
  local b_ms, b_seq = stream_id(b)
  if a_ms ~= b_ms then return decimal_less(a_ms, b_ms) end
  return decimal_less(a_seq, b_seq)
end

-- What a receipt keeps of its record, to know it again under an id a new record may reuse: the
-- first 64 bits of the SHA-1 of its fields (joined by NULs), in hex. A receipt is kept a day for
-- every entry, so its bytes count (a full digest would triple a receipt); two records at one id
-- are told apart, not an adversary resisted, since a writer to Redis can plant receipts anyway.
-- The sequencer computes the digests (store/audit_stages.py): Redis's SHA-1 over a record cost
-- about 8 % of this step's instructions, the same digest a few hundred nanoseconds in the worker,
-- and the shard is what every tenant's steps share.
local DIGEST_HEX = 16
local fields_given = #ARGV - 3
local digests, marks = nil, nil
local past_records = fields_given % RECORD_FIELDS
if past_records == 2 then
  digests, marks, fields_given = ARGV[#ARGV - 1], ARGV[#ARGV], fields_given - 2
elseif past_records == 1 then
  digests, fields_given = ARGV[#ARGV], fields_given - 1
end
local count = fields_given / RECORD_FIELDS
if count < 1 or count ~= math.floor(count) then return {'BAD_BATCH', 'record fields'} end
if digests and #digests ~= count * DIGEST_HEX then return {'BAD_BATCH', 'digests'} end
if marks and (#marks ~= count or string.find(marks, '[^01]')) then return {'BAD_BATCH', 'marks'} end
if not stream_id(expected == '' and '0-0' or expected) then return {'BAD_BATCH', 'cursor'} end
local late = expected ~= '' and last == expected
-- A stream never holds 0-0 (XADD refuses it): below every id a late batch may start with.
local previous = (late or expected == '') and '0-0' or expected
for i = 0, count - 1 do
  local id = ARGV[4 + i * RECORD_FIELDS]
  if not stream_id(id) then return {'BAD_BATCH', 'stream id'} end
  if not id_less(previous, id) then return {'BAD_BATCH', 'stream ids not above the cursor, ascending'} end
  previous = id
end
if late then
  if id_less(expected, previous) then return {'BAD_BATCH', 'a late batch above the cursor'} end
elseif previous ~= last then
  return {'BAD_BATCH', 'last stream id'}
end

-- The digest of record i (from 0), whose fields start at ARGV[at]: the caller's, else computed
-- here (one concatenation of the fields, no table: a table a record cost a third of the digest).
local function record_digest(i, at)
  if digests then return string.sub(digests, i * DIGEST_HEX + 1, (i + 1) * DIGEST_HEX) end
  local fields = ARGV[at + 1] .. '\0' .. ARGV[at + 2] .. '\0' .. ARGV[at + 3] .. '\0' .. ARGV[at + 4] .. '\0' .. ARGV[at + 5]
  return string.sub(redis.sha1hex(fields), 1, DIGEST_HEX)
end

-- Whether a late record (id, digest) was sequenced before: a receipt of its id and digest.
local function sequenced_before(id, digest)
  local late_receipt = redis.call('HGET', KEYS[5], id)
  if late_receipt and string.sub(late_receipt, -#digest) == digest then return true end
  local receipt = redis.call('XRANGE', KEYS[3], id, id)[1]
  if not receipt then return false end
  local fields = receipt[2]
  for f = 1, #fields - 1, 2 do
    if fields[f] == 'h' then return fields[f + 1] == digest end
  end
  -- A receipt written before receipts kept digests: its id is all there is to go by.
  return true
end

-- The batch is appended as audit() appends an entry, in the same bytes, but its Redis writes are
-- made once a batch: the head read and written once, the entries stored by one HSET of
-- ENTRIES_A_WRITE at a time, and each posting key appended to once with its postings in order.
-- (A posting key's postings gathered in a list and joined once: appending to a string per entry
-- copied it whole each time, which cost more than the entry's append.)
local ENTRIES_A_WRITE = 512
local prefix = string.sub(KEYS[1], 1, -4)
local head = prefix .. 'head'
local state = redis.call('HMGET', head, 'size', 'last_ms', LEGACY_MOVED)
local size, last_ms = tonumber(state[1] or '0'), tonumber(state[2] or '0')
local moved, born = legacy_mark(state[1], state[3])
local legacy_map = legacy_event_accounts(KEYS[1], moved)
local first = size
local POSTED_FIELDS = {{'type', 'type'}, {'outcome', 'outcome'}, {'method', 'method'}, {'acct', 'account'}}
local postings, posted = {}, {}
for i = 1, #POSTED_FIELDS do postings[i] = {} end
local entries = {}
local function store_entries()
  if #entries > 0 then redis.call('HSET', KEYS[1], unpack(entries)) end
  entries = {}
end

local reply = {'OK', first, 0}
local late_receipts = 0
local function receipt(id, digest, number)
  if late then
    redis.call('HSET', KEYS[5], id, (number or 'r') .. ' ' .. digest)
    late_receipts = late_receipts + 1
  elseif number then
    redis.pcall('XADD', KEYS[3], id, 'i', number, 'h', digest)
  else
    redis.pcall('XADD', KEYS[3], id, 'r', '1', 'h', digest)
  end
end
for i = 0, count - 1 do
  local at = 4 + i * RECORD_FIELDS
  local id, body, ms = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local digest = record_digest(i, at)
  -- The caller's mark is for the body in ARGV, the bytes it read and passes: the step judges
  -- those, never the stream's record, which may have changed since the read.
  local utf8_checked = marks ~= nil and string.byte(marks, i + 1) == 49  -- '1'
  local ev = nil
  if not (late and sequenced_before(id, digest)) then ev = staged_event(body, ms, utf8_checked) or false end
  if ev == nil then
    -- Sequenced before this step: a crash left it in the stream, the caller deletes it now.
  elseif ev then
    ev.event_account, ev.event_account_for, ev.span = ARGV[at + 3], ARGV[at + 4], ARGV[at + 5]
    -- A stage's clock may run ahead of this shard's: the log's time never passes its own.
    last_ms = math.max(math.min(tonumber(ms), NOW), last_ms)
    local index = string.format('%d', size)
    entries[#entries + 1], entries[#entries + 2] = index, audit_entry(index, last_ms, body)
    if EVENT_TYPES[ev.type] then outbox(KEYS[1], index, ev, legacy_map) end
    if #entries >= 2 * ENTRIES_A_WRITE then store_entries() end
    local posting = u48(size)
    for f, pair in ipairs(POSTED_FIELDS) do
      local value = ev[pair[2]]
      if value and value ~= '' then
        local lists, text = postings[f], tostring(value)
        local list = lists[text]
        if not list then
          list = {}
          lists[text] = list
          posted[#posted + 1] = {pair[1], text, list}
        end
        list[#list + 1] = posting
      end
    end
    receipt(id, digest, index)
    size = size + 1
  else
    receipt(id, digest, nil)
    reply[#reply + 1] = id
  end
end
store_entries()
if size > first then
  write_head(head, size, last_ms, born)
  for _, key in ipairs(posted) do
    redis.call('APPEND', prefix .. 'ix:' .. key[1] .. ':' .. key[2], table.concat(key[3]))
  end
end
reply[3] = size - first
if not late then redis.call('HSET', KEYS[2], bucket, last) end
if late_receipts > 0 then redis.call('PEXPIRE', KEYS[5], RECEIPT_KEEP_MS) end
redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d', NOW - RECEIPT_KEEP_MS))
return reply
