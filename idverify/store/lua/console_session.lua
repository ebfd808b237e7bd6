-- Opens or closes a console session together with its audit entry: one step in the tenant's
-- slot, so the log names every sign-in and sign-out of the auditor's console.
-- KEYS: session, audit log
-- ARGV: 'open', request json, role, client id, expiry (ms since the epoch), lifetime ms
--    or 'close', request json
local base = cjson.decode(ARGV[2])
if ARGV[1] == 'open' then
  redis.call('HSET', KEYS[1], 'role', ARGV[3], 'client_id', ARGV[4], 'expires_ms', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
  audit(KEYS[2], base, {type = 'console.signed_in', outcome = 'signed_in', reason = '',
    client_id = ARGV[4], role = ARGV[3]})
  return {'OK'}
end
if ARGV[1] ~= 'close' then return redis.error_reply('unknown console session operation') end
local fields = redis.call('HMGET', KEYS[1], 'role', 'client_id')
if redis.call('DEL', KEYS[1]) == 0 then return {'NOT_FOUND'} end
audit(KEYS[2], base, {type = 'console.signed_out', outcome = 'signed_out', reason = '',
  client_id = fields[2] or '', role = fields[1] or ''})
return {'OK'}
