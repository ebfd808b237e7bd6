-- Stores the display label of a login IP on an account (never the address) with its audit
-- entry. The entry names the database that made the label, not the label: a history of an
-- account's locations is more than an auditor needs to check the service.
-- KEYS: account, audit log
-- ARGV: label fields json (stored as they are, plus ip_ms), request json, account's audit pseudonym,
--   the label as an encoded IpLocation (batch reads copy it into their replies)
local fields = cjson.decode(ARGV[1])
fields.ip_ms = NOW
if ARGV[4] then fields.ip_wire = ARGV[4] end
set_fields(KEYS[1], fields)
local base = cjson.decode(ARGV[2])
base.account = ARGV[3]
audit(KEYS[2], base, {type = 'login_ip.recorded', outcome = 'recorded', reason = '',
  source = fields.ip_source or '', source_build_date = fields.ip_build or ''})
return NOW
