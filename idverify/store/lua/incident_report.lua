-- Records that an incident report was made, before the signed head the report names is taken,
-- so the report's evidence covers its own entry.
-- KEYS: audit log
-- ARGV: request json, the report's kind, window start ms, window end ms, principals named (count)
local base = cjson.decode(ARGV[1])
audit(KEYS[1], base, {type = 'incident.reported', outcome = 'reported', reason = '', kind = ARGV[2],
  since_ms = ARGV[3], until_ms = ARGV[4], principals = ARGV[5]})
return NOW
