-- Reserves a request id for the attempt that will start its verification; the record appears
-- when the start commits (start.lua), and a crashed attempt's reservation expires.
-- An attempt that gave up leaves its id released ('x:' .. its verification id, release_request.lua):
-- the caller's retry may take it, the released attempt's own late reservation may not.
-- KEYS: request
-- ARGV: verification id, reservation ms
-- Returns {'OK'} | {'HELD', holder} (another attempt holds it, or its verification exists) |
--   {'RELEASED'} (this attempt gave up before its reservation arrived)
local holder = redis.call('GET', KEYS[1])
if holder == 'x:' .. ARGV[1] then return {'RELEASED'} end
if holder and string.sub(holder, 1, 2) ~= 'x:' then return {'HELD', holder} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {'OK'}
