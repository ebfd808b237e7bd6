-- Records in a tenant's audit log that an operator acknowledged the entries a rollback lost (a
-- Redis restored from an older backup, behind a head already published), once per lost head:
-- a run that stopped after the entry and before it cleared the heads file is run again, and
-- finds its entry by the published root instead of writing a second one.
-- KEYS: audit log
-- ARGV: request json, published size, published root (hex), published time (ms), lost entries
--   ('first-last'), the log's size when the loss was found ('-1': it does not extend the head)
local prefix = string.sub(KEYS[1], 1, -4)  -- '...:audit:log' -> '...:audit:'
local posting = redis.call('GET', prefix .. 'ix:type:audit.rollback_acknowledged') or ''
for p = 1, #posting - 5, 6 do
  local seq = 0
  for i = p, p + 5 do seq = seq * 256 + string.byte(posting, i) end
  local entry = redis.call('HGET', KEYS[1], string.format('%d', seq))
  if entry and cjson.decode(entry).attributes.published_root == ARGV[3] then return {0, seq} end
end
local seq = tonumber(redis.call('HGET', prefix .. 'head', 'size') or '0')
-- Sizes, a root hash and a time: what the published head said, nothing about anyone.
audit(KEYS[1], cjson.decode(ARGV[1]), {type = 'audit.rollback_acknowledged', outcome = 'acknowledged',
  reason = 'AUDIT_LOG_ROLLED_BACK', published_size = ARGV[2], published_root = ARGV[3],
  published_time_ms = ARGV[4], lost_entries = ARGV[5], found_size = ARGV[6]})
return {1, seq}
