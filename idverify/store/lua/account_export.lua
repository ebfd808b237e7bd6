-- Records that a copy of an account's data was handed out, before the signed head the copy
-- proves its entries against is taken, so the copy proves its own entry too.
-- KEYS: audit log
-- ARGV: request json, account's audit pseudonym, first entry index asked for
local base = cjson.decode(ARGV[1])
base.account = ARGV[2]
audit(KEYS[1], base, {type = 'account.exported', outcome = 'exported', reason = '', start_index = ARGV[3]})
return NOW
