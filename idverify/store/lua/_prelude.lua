-- Shared by every script (prepended at load time). All keys a script touches are passed in
-- KEYS and share one hash slot (the tenant's; a phone's own for its deployment-wide counters),
-- so each script is one atomic step, also on Cluster.

local REDIS_TIME_MS = (function()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end)()
-- The time of every stored state and deadline: Redis's clock, but never before the floor that
-- Scripts.run appends as the last ARGV ('floor_ms=<ms>', taken off here), the store time the
-- caller has seen counted on by its monotonic clock. So a step back of Redis's clock neither
-- revives nor extends a code (idverify/store/clock.py).
local NOW = (function()
  local floor = string.match(ARGV[#ARGV] or '', '^floor_ms=(%d+)$')
  if not floor then return REDIS_TIME_MS end
  table.remove(ARGV)
  return math.max(REDIS_TIME_MS, tonumber(floor))
end)()
-- Whether a log this call creates is born walked (LEGACY_MOVED below): Scripts.run puts
-- NEW_LOGS_WALKED_ARG before the floor when its process started with no server of an older
-- release reporting in (idverify/flows/born_walked.py), taken off here like the floor.
local NEW_LOGS_WALKED_ARG = 'new_logs_walked=1'
local NEW_LOGS_WALKED = (function()
  if ARGV[#ARGV] ~= NEW_LOGS_WALKED_ARG then return false end
  table.remove(ARGV)
  return true
end)()

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Whether the ids a caller read before its script (a JSON list, decoded) are the stored ones, in
-- any order: a script that acts on each of them answers RETRY when they changed meanwhile, and the
-- caller reads again.
local function same_ids(stored, passed)
  if #stored ~= #passed then return false end
  local listed = {}
  for _, id in ipairs(passed) do listed[id] = true end
  for _, id in ipairs(stored) do
    if not listed[id] then return false end
  end
  return true
end

-- Constant-time comparison: the loop runs over the whole string whatever the first difference.
local function ct_equal(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    diff = bit.bor(diff, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  return diff == 0
end

-- The audit log. Any script that changes state records it by passing the tenant's
-- TenantKeys.audit_log() among its KEYS and calling, in the same script:
--   audit(KEYS[i], base, {type = 'thing.happened', outcome = '...', reason = '...', extra = '...'})
-- base: the request fields (principal, request_id, trace_id: RequestInfo.audit_fields()) and
-- whichever of verification_id, account (the *audit* pseudonym), method apply. Keys other than
-- those, type, outcome, reason and steps land in the entry's "attributes" (strings only, never
-- personal data). The entry format is documented in idverify/audit/events.py; the bytes written
-- here are the Merkle leaf, so they are canonical (fixed field order) and never re-encoded.
-- The log's other keys (head, indexes) are derived from the log key: they share its hash tag,
-- so the script stays in the tenant's slot on Cluster (idverify/store/keys.py lists them).
local AUDIT_TEXT_FIELDS = {'type', 'verification_id', 'account', 'method', 'outcome', 'reason'}
local AUDIT_REQUEST_FIELDS = {'principal', 'request_id', 'trace_id'}
local AUDIT_NOT_ATTRIBUTES = {v = true, seq = true, time_ms = true, steps = true, event_account = true,
  event_account_for = true, event_account_key = true, span = true}
for _, name in ipairs(AUDIT_TEXT_FIELDS) do AUDIT_NOT_ATTRIBUTES[name] = true end
for _, name in ipairs(AUDIT_REQUEST_FIELDS) do AUDIT_NOT_ATTRIBUTES[name] = true end

-- cjson escapes '/' as '\/'; both are JSON, and the plain form keeps principals readable. A '/'
-- in cjson's output is always preceded by its escaping backslash, so this cannot eat another.
-- Most texts need no escape at all: cjson's output is then the text and its two quotes, and the
-- gsub, which costs twice the encoding, is skipped (cjson only ever lengthens what it escapes).
-- A script's entries repeat most of their texts (its request's fields, a batch's type and
-- outcome), so each text is encoded once a call; the memo starts afresh past JSON_MEMO_MAX
-- texts, so that a long batch of distinct texts holds no more.
local JSON_MEMO_MAX = 512
local json_memo, json_memo_size = {}, 0
local function json_text(value)
  local text = tostring(value)
  local encoded = json_memo[text]
  if encoded then return encoded end
  encoded = cjson.encode(text)
  if #encoded ~= #text + 2 then encoded = string.gsub(encoded, '\\/', '/') end
  if json_memo_size >= JSON_MEMO_MAX then json_memo, json_memo_size = {}, 0 end
  json_memo[text], json_memo_size = encoded, json_memo_size + 1
  return encoded
end

-- A sequence number as 6 big-endian bytes: the entries of an index posting.
local function u48(n)
  return struct.pack('>I6', n)
end

-- Events for platforms (idverify/events): every entry of these types is also added to the
-- tenant's outbox stream in the same step, so an event exists exactly when its state change
-- and entry do, and delivery (StreamEvents, webhooks) reads from there. An outbox record names
-- its entry (s = sequence number), which is the event's content, and carries the platform's
-- account id sealed (a), which no entry holds. A step that knows the id gets it from its request
-- or its verification as base.event_account, with base.event_account_for (the audit pseudonym it
-- is the id of; neither goes into the entry). Once an account is bound, its id is also kept in
-- the account's own hash (field event_account, lasting like the account and deleted with it),
-- for the events of steps that do not know it (its erasure; a binding superseded by a claim
-- established elsewhere): such a step names the account's key as base.event_account_key (not in
-- the entry either), as every step touching the account does. An account never bound keeps
-- nothing past its verification but outbox records, which are trimmed by age. A record also
-- keeps the span context of the call that made the change (c = '<trace id>-<span id>-<flags>',
-- the request's span; random ids, no data), which the entry does not hold, so that a webhook
-- delivery's span links to it.
local EVENT_TYPES = {}
for _, name in ipairs({
  'verification.started', 'challenge.sent', 'verification.needs_guardian', 'verification.verified',
  'verification.rejected', 'verification.expired', 'account.bound', 'binding.superseded',
  'account.cancelled', 'account.erased', 'consent.granted', 'consent.withdrawn',
}) do EVENT_TYPES[name] = true end

-- 'iv1:{t:T}:audit:log' -> 'iv1:{t:T}:' (the tenant's keys; same hash tag).
local function tenant_prefix_of(log_key)
  return string.sub(log_key, 1, -10)
end

-- Servers before this one kept the ids in one tenant-wide hash, '<tenant prefix>events:acct'
-- (audit pseudonym -> sealed id), which a bucket's script cannot reach. It is read as a fallback
-- and emptied as accounts are touched: a step that has the account's hash moves the account's id
-- into it (Redis deletes the map with its last field). An older server still running beside
-- this one writes there at a binding; this one finds it there (docs/ARCHITECTURE.md, "Events").
-- legacy_map is nil where the tenant's slot is out of reach (a bucket's stage), and once
-- `idverify migrate legacy` moved the map's ids into their accounts and deleted it: it marks the
-- log's head (field LEGACY_MOVED), which every step writing an entry reads anyway, so a migrated
-- tenant's steps never touch the map's key, a tenant-wide key no bucket's step could reach
-- (docs/ARCHITECTURE.md, "Buckets: the plan", §6). A head without the mark (a tenant not
-- migrated) keeps the fallback. A log this release creates, while no older server reported in
-- when its process started (NEW_LOGS_WALKED), is born with the mark (LEGACY_BORN, in the head's
-- first write): no older server wrote its tenant's data, so there is nothing to walk.
local LEGACY_MOVED = 'legacy_moved'
local LEGACY_BORN = 'born'
local function legacy_event_accounts(log_key, moved)
  if moved then return nil end
  return tenant_prefix_of(log_key) .. 'events:acct'
end

-- The head's mark, given its size and mark as read (false when absent), and the mark a new log's
-- head is to be written with (nil but for a log born walked): a head without a size has no entry
-- yet, so the step reading it writes the log's first.
local function legacy_mark(size, moved)
  if moved then return moved, nil end
  if not size and NEW_LOGS_WALKED then return LEGACY_BORN, LEGACY_BORN end
  return nil, nil
end

-- Writes the head after a step appended up to size at last_ms (numbers), with the mark a new
-- log is born with (legacy_mark()'s second value) in the same HSET.
local function write_head(head, size, last_ms, born)
  local size_text, last_text = string.format('%d', size), string.format('%d', last_ms)
  if born then
    redis.call('HSET', head, 'size', size_text, 'last_ms', last_text, LEGACY_MOVED, born)
  else
    redis.call('HSET', head, 'size', size_text, 'last_ms', last_text)
  end
end

-- The log's head, from its log key: '...:audit:log' -> '...:audit:head'.
local function audit_head_of(log_key)
  return string.sub(log_key, 1, -4) .. 'head'
end

-- Whether a step's entry key is its bucket's stage (TenantKeys.audit_entries with a layout), not
-- the tenant's log: '...:audit:stage'. Its bucket holds no head and no map to derive.
local STAGE_SUFFIX = ':audit:stage'
local function is_stage_key(key)
  return string.sub(key, -#STAGE_SUFFIX) == STAGE_SUFFIX
end

-- legacy_event_accounts() for a step that reads no head otherwise (an account's erasure): its
-- own entry may be the log's first, born walked. Nil for a step given its bucket's stage, from
-- which the tenant's map is out of reach.
local function legacy_event_map(log_key)
  if is_stage_key(log_key) then return nil end
  local state = redis.call('HMGET', audit_head_of(log_key), 'size', LEGACY_MOVED)
  return legacy_event_accounts(log_key, legacy_mark(state[1], state[2]))
end

-- The sealed id of the account ev names ('' when none is known), keeping it in the account's
-- hash at its binding. The key ev.event_account_key is used only when its hash is that
-- account's (its audit field): a step's key never lends its id to an entry about another one.
local function event_account_of(ev, legacy_map)
  local account = ev.account or ''
  if account == '' then return '' end
  -- The step's sealed id is the request's account's; an entry about another account (one a
  -- claim superseded) is not given it.
  local known = ev.event_account_for == account and ev.event_account or ''
  local key = ev.event_account_key
  local row = key and redis.call('HMGET', key, 'audit', 'event_account')
  if not row or row[1] ~= account then
    if known ~= '' or not legacy_map then return known end
    return redis.call('HGET', legacy_map, account) or ''
  end
  if known ~= '' and ev.type == 'account.bound' then
    if row[2] ~= known then redis.call('HSET', key, 'event_account', known) end
    if legacy_map then redis.call('HDEL', legacy_map, account) end
    return known
  end
  if row[2] or not legacy_map then return known ~= '' and known or (row[2] or '') end
  local kept = redis.call('HGET', legacy_map, account)
  if kept then
    redis.call('HSET', key, 'event_account', kept)
    redis.call('HDEL', legacy_map, account)
  end
  return known ~= '' and known or (kept or '')
end

local function outbox(log_key, index, ev, legacy_map)
  local record = {'s', index}
  local sealed = event_account_of(ev, legacy_map)
  if sealed ~= '' then
    record[#record + 1] = 'a'
    record[#record + 1] = sealed
  end
  if ev.span and ev.span ~= '' then
    record[#record + 1] = 'c'
    record[#record + 1] = ev.span
  end
  -- '*': Redis orders the ids itself, whatever its clock or a restored log's numbers do.
  redis.call('XADD', tenant_prefix_of(log_key) .. 'events:outbox', '*', unpack(record))
end

-- An entry's fixed fields, each with the JSON text before its value, in the entry's order.
local AUDIT_TEXT_LABELS, AUDIT_REQUEST_LABELS = {}, {}
for i, name in ipairs(AUDIT_TEXT_FIELDS) do AUDIT_TEXT_LABELS[i] = ',"' .. name .. '":' end
for i, name in ipairs(AUDIT_REQUEST_FIELDS) do AUDIT_REQUEST_LABELS[i] = ',"' .. name .. '":' end

local function audit_steps(steps)
  if not steps or #steps == 0 then return '[]' end
  local texts = {}
  for i, step in ipairs(steps) do
    texts[i] = '{"verifier":' .. json_text(step.verifier or '') .. ',"outcome":'
      .. json_text(step.outcome or '') .. ',"reason":' .. json_text(step.reason or '') .. '}'
  end
  return '[' .. table.concat(texts, ',') .. ']'
end

local function audit_attributes(ev)
  local names = {}
  for k, v in pairs(ev) do
    if not AUDIT_NOT_ATTRIBUTES[k] then
      assert(type(v) ~= 'table', 'audit attributes are strings')
      names[#names + 1] = k
    end
  end
  if #names == 0 then return '{}' end
  table.sort(names)
  local attributes = {}
  for i, k in ipairs(names) do attributes[i] = json_text(k) .. ':' .. json_text(ev[k]) end
  return '{' .. table.concat(attributes, ',') .. '}'
end

-- Each filter QueryEvents offers has a posting, so that a query reads only what may match.
local function add_posting(prefix, name, value, posting)
  if value and value ~= '' then
    redis.call('APPEND', prefix .. 'ix:' .. name .. ':' .. tostring(value), posting)
  end
end

-- An entry's bytes after its number and time: ',"type":...,"attributes":{...}}'. audit() writes
-- '{"v":1,"seq":<n>,"time_ms":<ms>' before it; a stage keeps it alone (audit_stage), so that the
-- sequencer, which numbers it later, writes the very bytes audit() would have at that number and
-- time. It is built as one list of pieces joined once: its cost per entry is what a signup's
-- scripts and issue 26's append rate pay (bench/audit_append.py measures it).
local function audit_body(ev)
  local parts, n = {}, 0
  for i, name in ipairs(AUDIT_TEXT_FIELDS) do
    parts[n + 1], parts[n + 2] = AUDIT_TEXT_LABELS[i], json_text(ev[name] or '')
    n = n + 2
  end
  parts[n + 1], parts[n + 2] = ',"steps":', audit_steps(ev.steps)
  n = n + 2
  for i, name in ipairs(AUDIT_REQUEST_FIELDS) do
    parts[n + 1], parts[n + 2] = AUDIT_REQUEST_LABELS[i], json_text(ev[name] or '')
    n = n + 2
  end
  parts[n + 1], parts[n + 2], parts[n + 3] = ',"attributes":', audit_attributes(ev), '}'
  return table.concat(parts)
end

-- The request's fields and the event's, as one table (the event's win).
local function audit_event(base, fields)
  local ev = {}
  for k, v in pairs(base) do ev[k] = v end
  for k, v in pairs(fields) do ev[k] = v end
  assert(ev.type and ev.type ~= '', 'an audit entry needs a type')
  return ev
end

-- The stored bytes of the entry of body at number index (text) and time time_ms: what audit()
-- and the sequencer (audit_sequence.lua) both store of an entry, so the same bytes.
local function audit_entry(index, time_ms, body)
  return '{"v":1,"seq":' .. index .. ',"time_ms":' .. string.format('%d', time_ms) .. body
end

-- Writes the entry of body at number seq and time time_ms, and for an event type its outbox
-- record (ev gives the outbox's fields; legacy_map is legacy_event_accounts()'s). Returns the
-- number as text.
local function audit_write(log_key, seq, time_ms, ev, body, legacy_map)
  local index = string.format('%d', seq)
  redis.call('HSET', log_key, index, audit_entry(index, time_ms, body))
  if EVENT_TYPES[ev.type] then outbox(log_key, index, ev, legacy_map) end
  return index
end

-- Appends an entry of body at the log's next number, at_ms or the log's last time if later
-- (time never runs backwards within a log, so a time range is a range of sequence numbers),
-- with its postings and, for an event type, its outbox record. ev gives the postings' and the
-- outbox's fields. (The sequencer appends a batch the same way, reading the head and writing
-- it and each posting key once a batch.)
local function audit_append(log_key, ev, body, at_ms)
  local prefix = string.sub(log_key, 1, -4)  -- '...:audit:log' -> '...:audit:'
  local head = prefix .. 'head'
  local state = redis.call('HMGET', head, 'size', 'last_ms', LEGACY_MOVED)
  local seq = tonumber(state[1] or '0')
  local time_ms = math.max(at_ms, tonumber(state[2] or '0'))
  local moved, born = legacy_mark(state[1], state[3])
  audit_write(log_key, seq, time_ms, ev, body, legacy_event_accounts(log_key, moved))
  write_head(head, seq + 1, time_ms, born)
  local posting = u48(seq)
  add_posting(prefix, 'type', ev.type, posting)
  add_posting(prefix, 'outcome', ev.outcome, posting)
  add_posting(prefix, 'method', ev.method, posting)
  add_posting(prefix, 'acct', ev.account, posting)
end

-- Staging (issue 26): a script whose slot is a bucket's ({t:<tenant>:<bucket>}) cannot reach
-- the tenant's log, so it records its change's entry in the bucket's stage stream instead, in the
-- same step as the change (TenantKeys.audit_stage), and audit_sequence.lua numbers it later.
-- A staged record holds the body, the time it was staged (NOW) and, for an event type, what
-- outbox() would take from the request or the account (the sealed account id, ea, and whose,
-- ef; the span, c), which no entry holds; the postings' fields are in the body, which the
-- sequencer decodes anyway to check it. The account's hash is in the bucket; the tenant's
-- legacy map is not, and the sequencer's outbox() still falls back to it.
-- Returns the record's stream id: with the bucket, the entry's staged position.
local function audit_stage(stage_key, base, fields)
  local ev = audit_event(base, fields)
  local record = {'b', audit_body(ev), 'ms', string.format('%d', NOW)}
  if EVENT_TYPES[ev.type] then
    local sealed = event_account_of(ev, nil)
    local n = #record
    if sealed ~= '' then
      record[n + 1], record[n + 2], record[n + 3], record[n + 4] = 'ea', sealed, 'ef', ev.account
      n = n + 4
    end
    if (ev.span or '') ~= '' then record[n + 1], record[n + 2] = 'c', ev.span end
  end
  return redis.call('XADD', stage_key, '*', unpack(record))
end

-- A step's entry: appended to the tenant's log, or staged when the step is given its bucket's
-- stage instead (§2's record(): docs/ARCHITECTURE.md, "Buckets: the plan"), in the same bytes
-- once sequenced. Every script today is given the log, so one node's writes are unchanged.
local function audit(log_key, base, fields)
  if is_stage_key(log_key) then
    audit_stage(log_key, base, fields)
    return
  end
  local ev = audit_event(base, fields)
  audit_append(log_key, ev, audit_body(ev), NOW)
end

-- The sequencer's judgement of a staged record (audit_sequence.lua appends it or refuses it), which
-- QueryEvents' pending entries share (audit_stage_read.lua): the event a record's body records,
-- or nil unless the body is exactly what audit_body() makes of that event, UTF-8, at most
-- MAX_STAGED_BODY bytes, and its staged time a decimal of at most 15 digits.
-- An entry's length is two bytes in an entry bundle (audit/tiles.py): a body and the longest
-- '{"v":1,"seq":<n>,"time_ms":<ms>' stay below 65,536 bytes.
local MAX_STAGED_BODY = 65000
local function staged_rebuilt(body)
  local decoded = cjson.decode('{' .. string.sub(body, 2))
  if type(decoded) ~= 'table' or type(decoded.attributes) ~= 'table' then return nil end
  local ev = {}
  for k, v in pairs(decoded.attributes) do ev[k] = v end
  for _, name in ipairs(AUDIT_TEXT_FIELDS) do ev[name] = decoded[name] end
  for _, name in ipairs(AUDIT_REQUEST_FIELDS) do ev[name] = decoded[name] end
  ev.steps = decoded.steps
  if type(ev.type) ~= 'string' or ev.type == '' then return nil end
  if audit_body(ev) ~= body then return nil end
  return ev
end
-- Whether text is UTF-8: the log's readers decode every entry as UTF-8 JSON (audit/events.py),
-- and cjson passes any byte >= 0x80 through, so a planted body could pass the canonical check
-- and then break every read of the log. Most bodies are ASCII: one anchored match says so (one
-- tight loop over the bytes: a third of what an unanchored search for a byte >= 0x80 costs, which
-- tries a match at every position; 0.8 against 2.6 us for a 324-byte body). Otherwise the full
-- check refuses what RFC 3629 does (a stray continuation byte, a truncated sequence, an overlong
-- form, a surrogate, a code point above U+10FFFF). (A NUL fails the match, but not the check.)
local UTF8_SECOND = {[0xE0] = {0xA0, 0xBF}, [0xED] = {0x80, 0x9F}, [0xF0] = {0x90, 0xBF}, [0xF4] = {0x80, 0x8F}}
local function utf8_valid(text)
  if string.find(text, '^[\1-\127]*$') then return true end
  local i = string.find(text, '[\128-\255]')
  while i do
    local lead, more = string.byte(text, i), 0
    if lead >= 0xC2 and lead <= 0xDF then
      more = 1
    elseif lead >= 0xE0 and lead <= 0xEF then
      more = 2
    elseif lead >= 0xF0 and lead <= 0xF4 then
      more = 3
    else
      return false
    end
    local range = UTF8_SECOND[lead]
    local low, high = range and range[1] or 0x80, range and range[2] or 0xBF
    for k = 1, more do
      local byte = string.byte(text, i + k)
      if not byte or byte < low or byte > high then return false end
      low, high = 0x80, 0xBF
    end
    i = string.find(text, '[\128-\255]', i + more + 1)
  end
  return true
end

-- utf8_checked: the caller decoded these very bytes as UTF-8 itself (audit_sequence.lua's marks,
-- which the sequencer's worker sets from the body it passes), so the check is not repeated here.
local function staged_event(body, ms, utf8_checked)
  if #body > MAX_STAGED_BODY or string.sub(body, 1, 1) ~= ',' then return nil end
  if not (utf8_checked or utf8_valid(body)) then return nil end
  if not string.match(ms, '^%d+$') or #ms > 15 then return nil end
  local ok, ev = pcall(staged_rebuilt, body)
  if ok then return ev end
  return nil
end

local function set_fields(key, t)
  local flat = {}
  for k, v in pairs(t) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end

-- Identity claims (README "Identity claims"). An identity's name claim is *established* only by
-- a verification whose method is at or above the tenant's claim assurance (vf.establishes).
-- Until then every (document, name) pair has its own places under the binding limit, so
-- bindings under a false name never take the owner's; establishing a claim supersedes the
-- bindings under any other name. Accounts carry the pair's tag (vf.name_tag, a keyed
-- pseudonym); an account bound before tags existed carries the identity's first name.
local ASSURANCE_RANK = {low = 1, substantial = 2, high = 3}
local CLAIM_REFUSALS_WINDOW_MS = 86400000

-- Each member of an identity's accounts (the set idacc:<ref>) has its claim tag in the identity
-- record too, field 'm:<account pseudonym>' of id:<ref>, value 'b:<tag>' (bound; 'b:' for an
-- account bound untagged, under the identity's first name), so that a limit and a claim are
-- decided from the identity's keys alone, never from its members' accounts (which a bucketed
-- store keeps in other slots). The set stays as 0.1.0 reads and writes it, so that 0.1.0 serves
-- beside this release; 0.1.0 ignores the fields (it reads the record field by field, copies it
-- whole when it moves it, deletes it whole when it erases it), so a member it bound has none and
-- a member it cancelled (SREM) leaves its field behind.
local MEMBER_FIELD = 'm:'

-- The members' fields, pseudonym -> value (false for a member without one). A field whose
-- account is no longer a member (0.1.0's cancel) is dropped here: it counts for nothing and
-- must not outlive the binding (the erased account's pseudonym).
local function member_fields(id_key, idacc_key)
  local members = {}
  for _, member in ipairs(redis.call('SMEMBERS', idacc_key)) do members[member] = false end
  local record = redis.call('HGETALL', id_key)
  local stale = {}
  for i = 1, #record, 2 do
    local field = record[i]
    if string.sub(field, 1, #MEMBER_FIELD) == MEMBER_FIELD then
      local member = string.sub(field, #MEMBER_FIELD + 1)
      if members[member] == false then members[member] = record[i + 1] else stale[#stale + 1] = field end
    end
  end
  if #stale > 0 then redis.call('HDEL', id_key, unpack(stale)) end
  return members
end

-- The members with their values. A member without a field (bound by 0.1.0, or before fields
-- existed) gets it from its account's name_tag, read this once (the accounts share the slot
-- today), and written, so that no later decision reads that account again. `idverify migrate
-- legacy` writes every such field ahead (legacy_members.lua, this function per record).
-- Returns the members, and how many fields it wrote.
local function identity_members(id_key, idacc_key, acct_prefix)
  local members = member_fields(id_key, idacc_key)
  local written = 0
  for member, value in pairs(members) do
    if not value then
      value = 'b:' .. (redis.call('HGET', acct_prefix .. member, 'name_tag') or '')
      redis.call('HSET', id_key, MEMBER_FIELD .. member, value)
      members[member] = value
      written = written + 1
    end
  end
  return members, written
end

-- The members' pseudonyms in order, so that a script's entries about them come in the same order
-- whatever the set's layout.
local function sorted_members(members)
  local names = {}
  for member in pairs(members) do names[#names + 1] = member end
  table.sort(names)
  return names
end

-- A member's value: 'b:<tag>' bound, or 'p:<tag>:<vf id>', the place a binding in flight took for
-- verification <vf id> and has not confirmed yet (docs/ARCHITECTURE.md, "3.1 Binding": a binding
-- runs step by step on a Cluster). Returns the tag, and the pending verification's id (nil when
-- bound).
local function member_parts(value)
  if string.sub(value, 1, 2) ~= 'p:' then return string.sub(value, 3), nil end
  local tag, vf_id = string.match(value, '^p:([^:]*):(.*)$')
  return tag or '', vf_id or ''
end

-- A cancellation's identity step that leaves the record without members (LAST) writes the word
-- in it, step by step: field 'last:<claim tag>' = '1', the tag whose names are to go. The names'
-- step runs later, in the tenant's slot, and a worker killed in between leaves the word where a
-- re-indexing reads it: the record moves with it, and the settling step that finds the merged
-- record without members answers LAST with its tag too (move_settle.lua). The word acts only
-- there, on a record without members, when the names go anyway; it stays until the record is
-- erased (docs/ARCHITECTURE.md, "3.2 Cancellation", "3.4 Re-indexing").
local LAST_FIELD = 'last:'

-- The tags the record's LAST words name (see LAST_FIELD), as a set.
local function last_tags(id_key)
  local tags = {}
  local record = redis.call('HGETALL', id_key)
  for i = 1, #record, 2 do
    local field = record[i]
    if string.sub(field, 1, #LAST_FIELD) == LAST_FIELD then tags[string.sub(field, #LAST_FIELD + 1)] = true end
  end
  return tags
end

-- An account bound by a verification 0.1.0 started (tag '') stays untagged: first name. Its
-- member field says the same.
local function tag_account(acct_key, tag)
  if tag == '' then redis.call('HDEL', acct_key, 'name_tag') else redis.call('HSET', acct_key, 'name_tag', tag) end
end

-- The account half of a supersession (the identity's half is place_member's): a member of another
-- name loses its binding when a claim is established, with its entry under its own audit
-- pseudonym. Only while it is bound to ref: a repeat (a repaired step) changes nothing and writes
-- no second entry.
local function supersede_account(acct_key, ref, log_key, base)
  local acct = redis.call('HMGET', acct_key, 'identity', 'audit')
  if acct[1] ~= ref then return end
  redis.call('HDEL', acct_key, 'identity', 'name_tag', 'verified_ms', 'method', 'assurance',
    'age_band', 'age_source', 'birth_sealed', 'claim')
  redis.call('HSET', acct_key, 'superseded_ms', NOW)
  local event = {}
  for k, v in pairs(base) do event[k] = v end
  -- The superseded account's own pseudonym: its entry belongs to its history, not the caller's.
  event.account = acct[2] or ''
  event.event_account_key = acct_key
  audit(log_key, event, {type = 'binding.superseded', outcome = 'superseded', reason = 'CLAIM_ESTABLISHED'})
end

-- The account takes the verification's birth date, sealed to the account as it is (the band is
-- computed when read: idverify/flows/account_age.py). A verification again never replaces a
-- date from a document or an authority by a declared one. A verification started by a server
-- that froze the band at binding (no age_source) still writes that band.
-- The start day's band is written beside the date, though this release never reads it where
-- age_source is set: a 0.1.0 server on the same Redis during a rolling upgrade reads only it
-- (GetAccount's band, and its guardian check, which refused an adult bound without it as
-- GUARDIAN_NOT_ADULT). A release that no longer serves beside 0.1.0 can stop writing it.
local AGE_SOURCE_RANK = {none = 0, declared = 1, authority = 2, document = 2}

local function set_age(acct_key, vf, again)
  if not vf.age_source then
    redis.call('HSET', acct_key, 'age_band', vf.age_band)
    return
  end
  if again then
    local was = redis.call('HGET', acct_key, 'age_source') or 'none'
    if (AGE_SOURCE_RANK[was] or 0) > (AGE_SOURCE_RANK[vf.age_source] or 0) then return end
  end
  redis.call('HSET', acct_key, 'age_source', vf.age_source)
  if (vf.age_band or '') ~= '' then
    redis.call('HSET', acct_key, 'age_band', vf.age_band)
  else
    redis.call('HDEL', acct_key, 'age_band')
  end
  if (vf.birth_sealed or '') ~= '' then
    redis.call('HSET', acct_key, 'birth_sealed', vf.birth_sealed)
  else
    redis.call('HDEL', acct_key, 'birth_sealed')
  end
end

-- The index of verified organization names (idverify/store/keys.py: orgname, orgnames:<tag>).
-- Its keys are derived from an account key (same prefix and hash tag). An index field is a
-- keyed hash of a folded name; its value the space-separated claim tags of the organizations
-- that hold it (two companies of different cities may share a short form).
local function org_name_keys(acct_key)
  local base = string.match(acct_key, '^(.*:)acct:[^:]*$')
  return base .. 'orgname', base .. 'orgnames:'
end

local function add_org_name(index_key, own_key, hash, tag, kind)
  local owners = redis.call('HGET', index_key, hash) or ''
  if not string.find(' ' .. owners .. ' ', ' ' .. tag .. ' ', 1, true) then
    redis.call('HSET', index_key, hash, owners == '' and tag or (owners .. ' ' .. tag))
  end
  redis.call('HSET', own_key, hash, kind)
end

local function remove_org_name(index_key, own_key, hash, tag)
  local kept = {}
  for owner in string.gmatch(redis.call('HGET', index_key, hash) or '', '%S+') do
    if owner ~= tag then kept[#kept + 1] = owner end
  end
  if #kept == 0 then redis.call('HDEL', index_key, hash)
  else redis.call('HSET', index_key, hash, table.concat(kept, ' ')) end
  redis.call('HDEL', own_key, hash)
end

-- An organization whose claim a verification establishes (or confirms) holds its names'
-- forms (comma-separated hex hashes, computed while its name was in memory): bind_names.lua, a
-- binding's tenant-wide step. index_key is the tenant's orgname, own_key its orgnames:<tag>.
-- Indexing them again changes nothing.
local function index_org_names(index_key, own_key, tag, hashes)
  if (hashes or '') == '' or (tag or '') == '' then return end
  for hash in string.gmatch(hashes, '[^,]+') do
    add_org_name(index_key, own_key, hash, tag, 'v')
  end
end

-- Its names leave the index with the last account bound to its identity (drop_names.lua, the
-- tenant-wide step of a cancellation, or of a re-indexing whose settling step dropped the last
-- members): index_key is the tenant's orgname, own_key its orgnames:<tag>. Dropping them again
-- finds nothing to drop.
local function drop_org_names(index_key, own_key, tag)
  if (tag or '') == '' then return end
  for _, hash in ipairs(redis.call('HKEYS', own_key)) do
    remove_org_name(index_key, own_key, hash, tag)
  end
  redis.call('DEL', own_key)
end

-- A re-indexing of the identity is in flight (docs/ARCHITECTURE.md, "3.4 Re-indexing"): marked
-- 'moving_to' where it leaves, 'incoming' where it arrives until its members' accounts point
-- there. A binding then answers RETRY and its caller tries again within its deadline, so that no
-- place is ever counted on half of the members.
local function identity_moving(id_key)
  local marks = redis.call('HMGET', id_key, 'moving_to', 'incoming')
  return marks[1] ~= false or marks[2] ~= false
end

-- Whether a binding may take its place at the identity its verification found (id_key): {'RETRY'}
-- while a move of it is in flight (the caller waits and tries again), {'MOVED'} once it moved
-- since (key rotation, a new pepper: the caller points the verification anew), nil where it rests.
-- An identity's key, so the identity's step asks it (bind_place.lua); on one node the scripts
-- that bind ask it first too, before their account's step writes anything.
local function identity_move_reply(id_key, vf)
  if identity_moving(id_key) then return {'RETRY'} end
  if redis.call('HEXISTS', id_key, 'moved_to') == 1
    or ((vf.name_binding_seen or '') ~= '' and redis.call('EXISTS', id_key) == 0) then
    return {'MOVED'}
  end
  return nil
end

-- Whether a pending member 'p:<tag>:<vf id>' of account member is a place a binding took: the place
-- writes it in one script with its intent 'place:<vf id>' naming the account (bind_place.lua; on
-- one node no intent, but the member is confirmed in the same script), and the confirm removes
-- the intent only with the member or after it (bind_confirm.lua). Without that intent it was
-- written by no binding (half a backup restored, a writer to Redis) and nothing would ever confirm
-- or remove it. The intent's ref is not compared: a move (move_in.lua) carries the member to its
-- new record and leaves the intent as the place wrote it, where the confirm follows it. The
-- intent's record is named as keys.py names it, beside intents_key (the identity's slot).
local function pending_place_held(intents_key, member, vf_id)
  local intent = 'place:' .. vf_id
  if not redis.call('ZSCORE', intents_key, intent) then return false end
  return redis.call('HGET', string.sub(intents_key, 1, -2) .. ':' .. intent, 'acct') == member
end

-- The identity half of a binding (bind_place.lua: docs/ARCHITECTURE.md, "3.1 Binding"),
-- decided from the identity's keys alone: the claim rules, the places counted from the members'
-- values ('b:' and 'p:' alike), and, when the verification establishes a claim, the members of
-- other names removed (d.superseded: their accounts are the caller's to supersede) and the
-- untagged members of this name tagged (d.tagged: their accounts' tags likewise). A member pending
-- under another name stays: its own binding's confirm finds the claim and supersedes it then
-- (bind_confirm.lua), and an established claim does not count it. vf.name_tag and vf.establishes
-- are settled here for a verification 0.1.0 started. A new member is pending under the
-- verification's id until the confirm (bind_confirm.lua).
-- A pending member without its intent (pending_place_held) is removed first and counts for
-- nothing, so that members no binding took cannot fill the owner's places (intents_key: the
-- identity's slot's intents).
-- Returns d: decision PLACED, AGAIN (bound under this name already: no new place) or REFUSED
-- (d.reason; d.counted: whether the refusal counts against the name's claim refusals),
-- d.established when this verification established the claim, and d.planted, how many pending
-- members without their intents it removed.
local function place_member(id_key, idacc_key, intents_key, acct_prefix, vf, limit)
  local d = {superseded = {}, tagged = {}, established = false, counted = false, reason = '', planted = 0}
  local members = identity_members(id_key, idacc_key, acct_prefix)
  for member, value in pairs(members) do
    local vf_id = select(2, member_parts(value))
    if vf_id and not pending_place_held(intents_key, member, vf_id) then
      redis.call('SREM', idacc_key, member)
      redis.call('HDEL', id_key, MEMBER_FIELD .. member)
      members[member] = nil
      d.planted = d.planted + 1
    end
  end
  local id = redis.call('HMGET', id_key, 'name_binding', 'established', 'claim_tag')
  local stored, established, claim_tag = id[1], id[2] == '1', id[3]
  local first_name_is_ours = stored and (stored == vf.name_binding or stored == (vf.name_binding_seen or ''))
  -- The tag a member counts under: its own, or for an untagged one the identity's first name,
  -- which is this verification's when its name is the first.
  local function tag_of(value)
    local tag = member_parts(value)
    if tag ~= '' then return tag end
    if first_name_is_ours then return vf.name_tag end
    return ''
  end
  local function refused(reason, counted)
    d.decision, d.reason, d.counted = 'REFUSED', reason, counted
    return d
  end
  if not vf.name_tag then
    -- Started by 0.1.0, which computed no tag and refused at the start any name but the
    -- identity's first: it binds under the first name, untagged like the accounts 0.1.0 bound
    -- (an established claim's tag when that is the first name), and establishes nothing.
    if established and not first_name_is_ours then return refused('NAME_MISMATCH', false) end
    vf.name_tag, vf.establishes = established and claim_tag or '', '0'
  end
  if established and claim_tag ~= vf.name_tag then return refused('NAME_MISMATCH', true) end

  if vf.establishes == '1' and not established then
    for _, member in ipairs(sorted_members(members)) do
      local value = members[member]
      local tag, pending = tag_of(value), select(2, member_parts(value))
      if tag ~= vf.name_tag then
        if not pending then
          redis.call('SREM', idacc_key, member)
          redis.call('HDEL', id_key, MEMBER_FIELD .. member)
          d.superseded[#d.superseded + 1] = member
          members[member] = nil
        end
      elseif value == 'b:' and tag ~= '' then
        redis.call('HSET', id_key, MEMBER_FIELD .. member, 'b:' .. tag)
        d.tagged[#d.tagged + 1] = member
        members[member] = 'b:' .. tag
      end
    end
    redis.call('HSET', id_key, 'name_binding', vf.name_binding, 'established', '1',
      'claim_tag', vf.name_tag, 'claim_ms', NOW, 'claim_assurance', vf.assurance)
    if not stored then redis.call('HSET', id_key, 'pepper', vf.pepper, 'created_ms', NOW) end
    stored, established, first_name_is_ours = vf.name_binding, true, true
    d.established = true
  end

  local own = members[vf.acct]
  if own and not select(2, member_parts(own)) and tag_of(own) == vf.name_tag then
    redis.call('HSET', id_key, MEMBER_FIELD .. vf.acct, 'b:' .. vf.name_tag)
    d.decision = 'AGAIN'
    return d
  end
  -- A new binding, or this account moving to another name of an unestablished document.
  local taken = 0
  for member, value in pairs(members) do
    if member ~= vf.acct and (tag_of(value) == vf.name_tag or (established and not select(2, member_parts(value)))) then
      taken = taken + 1
    end
  end
  if taken >= tonumber(limit) then return refused('BINDING_LIMIT_REACHED', true) end
  redis.call('SADD', idacc_key, vf.acct)
  if not stored then
    redis.call('HSET', id_key, 'name_binding', vf.name_binding, 'pepper', vf.pepper, 'created_ms', NOW)
  end
  redis.call('HSET', id_key, MEMBER_FIELD .. vf.acct, 'p:' .. vf.name_tag .. ':' .. vf.id)
  d.decision = 'PLACED'
  return d
end

-- The account half of a binding (bind_commit.lua),
-- after the identity half's decision d, the supersessions it asked for and the claim's entry:
-- the account bound, or verified again (again: with its account.updated entry), or refused. The
-- caller's finish then writes account.bound or binding.refused, and the verification's entry. A
-- refusal was counted by the step before (bind_count.lua, the counter's slot); an organization's
-- names are indexed by the step after a binding (bind_names.lua, the tenant's slot).
-- Returns status, reason.
local function bind_account(acct_key, vf, d, again, log_key, base)
  if d.decision == 'REFUSED' then return 'REJECTED', d.reason end
  if not again then
    redis.call('HSET', acct_key, 'identity', vf.identity, 'verified_ms', NOW,
      'method', vf.method, 'assurance', vf.assurance, 'kind', vf.kind, 'audit', vf.acct_audit)
    tag_account(acct_key, vf.name_tag)
    set_age(acct_key, vf, false)
    redis.call('HDEL', acct_key, 'superseded_ms')
    return 'VERIFIED', ''
  end
  -- Verified again: the account shows this verification's method and time, and the highest
  -- assurance of its binding.
  local was = redis.call('HMGET', acct_key, 'assurance', 'method')
  local assurance = vf.assurance
  if (ASSURANCE_RANK[was[1] or ''] or 0) > (ASSURANCE_RANK[assurance] or 0) then assurance = was[1] end
  redis.call('HSET', acct_key, 'verified_ms', NOW, 'method', vf.method, 'assurance', assurance)
  tag_account(acct_key, vf.name_tag)
  set_age(acct_key, vf, true)
  if was[1] ~= assurance or was[2] ~= vf.method then
    audit(log_key, base, {type = 'account.updated', outcome = 'updated', reason = '',
      assurance = assurance, previous_method = was[2] or ''})
  end
  return 'VERIFIED', ''
end

-- What a binding's identity step needs of its verification (bind_place.lua), as the account's
-- step answers it and the repairer's take reads it back (bind_judge.lua, intent_take.lua): flat
-- texts, so that a chain passes them on as arguments. name_tag is absent for a verification
-- 0.1.0 started, which the flag after it keeps apart from an empty tag. org_names (an
-- organization's names, when it establishes) is last: the place keeps it for the names' step.
local function binding_inputs(vf)
  return {'BINDING', vf.id, vf.acct, vf.identity, vf.name_binding or '', vf.name_binding_seen or '',
    vf.name_tag or '', vf.name_tag and '1' or '0', vf.establishes or '0', vf.pepper or '',
    vf.assurance or '', vf.method or '', vf.org_names or ''}
end

-- Step by step (store/binding_steps.py), the account's step of a binding (a right answer's judge,
-- a start in bind mode, a guardian's consent) marks its verification in flight: 'binding' = 1,
-- kept without its TTL until the commit, and the account's 'binding' = its id, so that another
-- right answer for the account waits (BUSY); and it writes the durable intent 'bind:<vf id>' with
-- what the steps after it and a repair need: the account, the identity, the limit and the request
-- the entries name. No TTL: only the commit or the repairer's refusal removes the intent.
local function mark_binding(vf_key, acct_key, intents_key, intent_key, vf, delay_ms, limit, request)
  redis.call('HSET', vf_key, 'binding', '1')
  redis.call('PERSIST', vf_key)
  redis.call('HSET', acct_key, 'binding', vf.id)
  redis.call('DEL', intent_key)
  redis.call('HSET', intent_key, 'kind', 'bind', 'subject', vf.id, 'acct', vf.acct, 'ref', vf.identity,
    'limit', limit, 'request', request)
  redis.call('ZADD', intents_key, NOW + tonumber(delay_ms), 'bind:' .. vf.id)
end

-- What binding_inputs gives, read back from args, from its first text ('BINDING') at index first.
local function binding_of(args, first)
  local tagged = args[first + 7] == '1'
  return {id = args[first + 1], acct = args[first + 2], identity = args[first + 3],
    name_binding = args[first + 4], name_binding_seen = args[first + 5],
    name_tag = tagged and args[first + 6] or nil, establishes = args[first + 8],
    pepper = args[first + 9], assurance = args[first + 10], method = args[first + 11],
    org_names = args[first + 12]}
end

local function finish(vf_key, log_key, base, vf, status, reason, bind_reason_event)
  vf.status = status
  vf.reason = reason
  vf.next_step = ''
  redis.call('HSET', vf_key, 'status', status, 'reason', reason, 'next_step', '')
  redis.call('HDEL', vf_key, 'digest')
  if bind_reason_event then
    if status == 'VERIFIED' then
      audit(log_key, base, {type = 'account.bound', outcome = 'bound', reason = reason})
    else
      audit(log_key, base, {type = 'binding.refused', outcome = 'refused', reason = reason})
    end
  end
  local kind = status == 'VERIFIED' and 'verification.verified'
    or (status == 'EXPIRED' and 'verification.expired' or 'verification.rejected')
  audit(log_key, base, {type = kind, outcome = string.lower(status), reason = reason})
end

-- acct_key: the verification's account's hash, when the step has it.
local function event_base(vf, request, acct_key)
  local base = cjson.decode(request)
  base.verification_id = vf.id
  base.account = vf.acct_audit
  base.method = vf.method
  base.event_account_key = acct_key
  if vf.event_account and vf.event_account ~= '' then
    base.event_account = vf.event_account
    base.event_account_for = vf.acct_audit
  end
  return base
end

-- Read accounting (idverify/flows/read_accounting.py). A script that returns verified data
-- records the accounts it returned, in the same step: per hour, HyperLogLogs of the account
-- pseudonyms and of their identity refs per client and data category, and the hour's set of
-- readers (keys.py: reads:*); per minute, the accounts and calls that the minute's summary
-- entry is made of (readmin:*, closed by reads_close.lua). Every key is the caller's tenant's,
-- named from its base ('iv1:{t:T}:'), so the step stays in the tenant's slot.
-- The read is described by READ_SPEC_SIZE arguments (ReadLedger.spec): client id (empty: a read
-- the service makes for itself, not recorded), principal label, RPC name, categories joined
-- by ',', retention in seconds.
local READ_SPEC_SIZE = 5
local HOUR_MS, MINUTE_MS = 3600000, 60000
-- unpack() is bounded by Lua's C stack; a batch is added in slices well under it.
local READ_SLICE = 1000

-- args: the arguments holding it (a composed step's own, not the script's ARGV).
local function read_spec(args, first)
  return {client = args[first], principal = args[first + 1], rpc = args[first + 2],
    categories = args[first + 3], ttl = args[first + 4]}
end

local function add_all(command, key, members, ttl)
  for i = 1, #members, READ_SLICE do
    redis.call(command, key, unpack(members, i, math.min(i + READ_SLICE - 1, #members)))
  end
  redis.call('EXPIRE', key, ttl)
end

-- base: the tenant's key base; accounts: the pseudonyms read; identities: their bound identity
-- refs (unbound accounts have none).
local function record_reads_now(base, spec, accounts, identities)
  local reads = base .. 'reads:' .. string.format('%d', math.floor(NOW / HOUR_MS)) .. ':'
  if #accounts > 0 then
    for category in string.gmatch(spec.categories, '[^,]+') do
      local prefix = reads .. spec.client .. ':' .. category .. ':'
      add_all('PFADD', prefix .. 'a', accounts, spec.ttl)
      if #identities > 0 then add_all('PFADD', prefix .. 'i', identities, spec.ttl) end
    end
  end
  local minute = string.format('%d', math.floor(NOW / MINUTE_MS))
  local open = minute .. ':' .. spec.client
  local summary = base .. 'readmin:' .. open
  if #accounts > 0 then add_all('SADD', summary .. ':a', accounts, spec.ttl) end
  local first = redis.call('HINCRBY', summary .. ':n', 'calls:' .. spec.rpc, 1) == 1
  if #accounts > 0 or first then
    redis.call('HINCRBY', summary .. ':n', 'accounts:' .. spec.rpc, #accounts)
  end
  -- What stays the same for the whole minute is written by the minute's first call of each RPC
  -- only (a minute is within an hour): a batch read's recording is mostly these small writes.
  if first then
    redis.call('HSET', summary .. ':n', 'principal', spec.principal)
    redis.call('EXPIRE', summary .. ':n', spec.ttl)
    redis.call('ZADD', base .. 'readmin:open', minute, open)
    redis.call('EXPIRE', base .. 'readmin:open', spec.ttl)
    redis.call('SADD', reads .. 'who', spec.client)
    redis.call('EXPIRE', reads .. 'who', spec.ttl)
  end
end

-- A Redis that refuses writes (full, or unable to persist) refuses a script's first write; the
-- read is then answered unrecorded rather than refused, as a full store keeps serving reads
-- (docs/RELIABILITY.md). Its write health is down meanwhile, which is what operators watch.
local function record_reads(base, spec, accounts, identities)
  if spec.client == '' then return end
  pcall(record_reads_now, base, spec, accounts, identities)
end

-- A counter step's windows (docs/ARCHITECTURE.md, "3.6 Counters in two slots"): each checked
-- against its limit (0: off) before any is spent, so a refused call costs no window; the first
-- full one counts the refusal, and its first refusal of a window is audited (request.limit names
-- it). Returns {'LIMITED', name, ttl ms}, or nil and each window's end (Redis's ms, 0: off) once
-- every window counted the call: a give-back names the window it counted in by its end.
local function count_windows(keys, limits, names, windows_ms, log_key, request_json)
  for i = 1, #keys do
    if limits[i] > 0 and tonumber(redis.call('GET', keys[i]) or '0') >= limits[i] then
      local count = redis.call('INCR', keys[i])
      local ttl = redis.call('PTTL', keys[i])
      if ttl < 0 then
        redis.call('PEXPIRE', keys[i], windows_ms[i])
        ttl = windows_ms[i]
      end
      if count == limits[i] + 1 then
        local request = cjson.decode(request_json)
        request.limit = names[i]
        audit(log_key, request, {type = 'rate_limit.hit', outcome = 'limited', reason = 'RATE_LIMITED'})
      end
      return {'LIMITED', names[i], ttl}
    end
  end
  local ends = {}
  for i = 1, #keys do
    ends[i] = 0
    if limits[i] > 0 then
      if redis.call('INCR', keys[i]) == 1 then redis.call('PEXPIRE', keys[i], windows_ms[i]) end
      ends[i] = REDIS_TIME_MS + redis.call('PTTL', keys[i])
    end
  end
  return nil, ends
end
