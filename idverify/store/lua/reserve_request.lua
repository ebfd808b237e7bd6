-- Reserves a request id for the attempt that will start its verification; the record appears
-- when the start commits (start.lua), and a crashed attempt's reservation expires.
-- An attempt that gave up leaves its release marker (release_request.lua) and the request id
-- free: the caller's retry may take it, the released attempt's own late reservation may not.
-- KEYS: request (the account's key: keyed over account and request id), this attempt's release
--   marker
-- ARGV: verification id, reservation ms
-- Returns {'OK'} | {'HELD', holder} (another attempt holds it, or its verification exists) |
--   {'RELEASED'} (this attempt gave up before its reservation arrived)
if redis.call('EXISTS', KEYS[2]) == 1 then return {'RELEASED'} end
local holder = redis.call('GET', KEYS[1])
if holder then return {'HELD', holder} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {'OK'}
