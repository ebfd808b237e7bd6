-- A CheckIdentity check's audit entry, after its two counter steps answered on a Cluster
-- (docs/ARCHITECTURE.md, "3.6 Counters in two slots"): the entry identity_check.lua writes with
-- them on one node, in the tenant's slot where the log is.
-- KEYS: audit log
-- ARGV: request json (RequestInfo.audit_fields() and the account's audit pseudonym), outcome
--   ('refused' | 'match' | 'mismatch'), the refusal's reason ('' for none)
-- Returns {'OK'}
local fields = {type = 'identity.checked', outcome = ARGV[2]}
if ARGV[3] ~= '' then fields.reason = ARGV[3] end
audit(KEYS[1], cjson.decode(ARGV[1]), fields)
return {'OK'}
