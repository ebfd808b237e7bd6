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

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
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
local AUDIT_NOT_ATTRIBUTES = {v = true, seq = true, time_ms = true, steps = true}
for _, name in ipairs(AUDIT_TEXT_FIELDS) do AUDIT_NOT_ATTRIBUTES[name] = true end
for _, name in ipairs(AUDIT_REQUEST_FIELDS) do AUDIT_NOT_ATTRIBUTES[name] = true end

-- cjson escapes '/' as '\/'; both are JSON, and the plain form keeps principals readable. A '/'
-- in cjson's output is always preceded by its escaping backslash, so this cannot eat another.
local function json_text(value)
  return (string.gsub(cjson.encode(tostring(value)), '\\/', '/'))
end

-- A sequence number as 6 big-endian bytes: the entries of an index posting.
local function u48(n)
  local b = {}
  for i = 6, 1, -1 do
    b[i] = n % 256
    n = math.floor(n / 256)
  end
  return string.char(unpack(b))
end

local function audit(log_key, base, fields)
  local ev = {}
  for k, v in pairs(base) do ev[k] = v end
  for k, v in pairs(fields) do ev[k] = v end
  assert(ev.type and ev.type ~= '', 'an audit entry needs a type')
  local prefix = string.sub(log_key, 1, -4)  -- '...:audit:log' -> '...:audit:'
  local head = prefix .. 'head'
  local state = redis.call('HMGET', head, 'size', 'last_ms')
  local seq = tonumber(state[1] or '0')
  -- Time never runs backwards within a log, so a time range is a range of sequence numbers.
  local time_ms = math.max(NOW, tonumber(state[2] or '0'))
  local parts = {'{"v":1,"seq":', string.format('%d', seq), ',"time_ms":', string.format('%d', time_ms)}
  for _, name in ipairs(AUDIT_TEXT_FIELDS) do
    parts[#parts + 1] = ',"' .. name .. '":' .. json_text(ev[name] or '')
  end
  local steps = {}
  for _, step in ipairs(ev.steps or {}) do
    steps[#steps + 1] = '{"verifier":' .. json_text(step.verifier or '') .. ',"outcome":'
      .. json_text(step.outcome or '') .. ',"reason":' .. json_text(step.reason or '') .. '}'
  end
  parts[#parts + 1] = ',"steps":[' .. table.concat(steps, ',') .. ']'
  for _, name in ipairs(AUDIT_REQUEST_FIELDS) do
    parts[#parts + 1] = ',"' .. name .. '":' .. json_text(ev[name] or '')
  end
  local names = {}
  for k, v in pairs(ev) do
    if not AUDIT_NOT_ATTRIBUTES[k] then
      assert(type(v) ~= 'table', 'audit attributes are strings')
      names[#names + 1] = k
    end
  end
  table.sort(names)
  local attributes = {}
  for _, k in ipairs(names) do attributes[#attributes + 1] = json_text(k) .. ':' .. json_text(ev[k]) end
  parts[#parts + 1] = ',"attributes":{' .. table.concat(attributes, ',') .. '}}'
  local index = string.format('%d', seq)
  redis.call('HSET', log_key, index, table.concat(parts))
  redis.call('HSET', head, 'size', string.format('%d', seq + 1), 'last_ms', string.format('%d', time_ms))
  -- Each filter QueryEvents offers has a posting, so that a query reads only what may match.
  local posting = u48(seq)
  for _, index in ipairs({{'type', ev.type}, {'outcome', ev.outcome}, {'method', ev.method}, {'acct', ev.account}}) do
    if index[2] and index[2] ~= '' then
      redis.call('APPEND', prefix .. 'ix:' .. index[1] .. ':' .. tostring(index[2]), posting)
    end
  end
end

local function set_fields(key, t)
  local flat = {}
  for k, v in pairs(t) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end

-- Binds the verification's account to its identity unless a rule forbids it.
-- Returns status, reason.
local function bind(acct_key, id_key, idacc_key, vf, limit)
  local current = redis.call('HGET', acct_key, 'identity')
  if current and current ~= vf.identity then
    return 'REJECTED', 'ACCOUNT_BOUND_TO_OTHER_IDENTITY'
  end
  local stored = redis.call('HGET', id_key, 'name_binding')
  if stored and stored ~= vf.name_binding and stored ~= (vf.name_binding_seen or '') then
    return 'REJECTED', 'NAME_MISMATCH'
  end
  if not current then
    if redis.call('SISMEMBER', idacc_key, vf.acct) == 0
      and redis.call('SCARD', idacc_key) >= tonumber(limit) then
      return 'REJECTED', 'BINDING_LIMIT_REACHED'
    end
    redis.call('SADD', idacc_key, vf.acct)
    if not stored then
      redis.call('HSET', id_key, 'name_binding', vf.name_binding, 'pepper', vf.pepper, 'created_ms', NOW)
    end
    redis.call('HSET', acct_key,
      'identity', vf.identity, 'verified_ms', NOW, 'method', vf.method, 'assurance', vf.assurance,
      'kind', vf.kind, 'age_band', vf.age_band, 'audit', vf.acct_audit)
  end
  return 'VERIFIED', ''
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

local function event_base(vf, request)
  local base = cjson.decode(request)
  base.verification_id = vf.id
  base.account = vf.acct_audit
  base.method = vf.method
  return base
end
