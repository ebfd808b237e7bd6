-- Binary searches of the audit log, server-side, so that a query finds where to start in one
-- round trip. Entry times never decrease (the prelude's audit() sees to it), and index
-- postings hold ascending sequence numbers.
-- KEYS: audit log, audit head, then index postings
-- ARGV: mode, then its targets
--   'time', t1, t2, ...: the trim point first (entries below it are in the bundles alone,
--     audit_trim.lua), then for each time (ms) the first sequence number at or above the trim
--     point whose entry is at or after it (the log's size when there is none); an answer equal
--     to a trim point above 0 means "here or below", for the caller to search the bundles
--   'posting', seq: for each posting of KEYS[3..], the position (in entries) of the first
--     sequence number >= seq, and the posting's length (in entries)
local WIDTH = 6

local function entry_time(seq)
  local entry = redis.call('HGET', KEYS[1], string.format('%d', seq))
  if not entry then return nil end
  return tonumber(string.match(entry, '^{"v":%d+,"seq":%d+,"time_ms":(%d+),'))
end

local function posting_at(key, position)
  local a, b, c, d, e, f = string.byte(redis.call('GETRANGE', key, position * WIDTH, position * WIDTH + WIDTH - 1), 1, WIDTH)
  return ((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f
end

local answers = {}
if ARGV[1] == 'time' then
  local size = tonumber(redis.call('HGET', KEYS[2], 'size') or '0')
  local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
  answers[1] = trimmed
  for i = 2, #ARGV do
    local target = tonumber(ARGV[i])
    local lo, hi = trimmed, size
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local t = entry_time(mid)
      if not t then return redis.error_reply('audit entry ' .. mid .. ' is missing or malformed') end
      if t < target then lo = mid + 1 else hi = mid end
    end
    answers[#answers + 1] = lo
  end
elseif ARGV[1] == 'posting' then
  local target = tonumber(ARGV[2])
  for i = 3, #KEYS do
    local length = math.floor(redis.call('STRLEN', KEYS[i]) / WIDTH)
    local lo, hi = 0, length
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if posting_at(KEYS[i], mid) < target then lo = mid + 1 else hi = mid end
    end
    answers[#answers + 1] = lo
    answers[#answers + 1] = length
  end
else
  return redis.error_reply('unknown seek mode')
end
return answers
