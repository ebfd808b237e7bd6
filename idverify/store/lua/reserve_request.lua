-- Reserves a request id for the attempt that will start its verification; the record appears
-- when the start commits (start.lua), and a crashed attempt's reservation expires.
-- KEYS: request
-- ARGV: verification id, reservation ms
-- Returns {'OK'} | {'HELD'} (another attempt holds it, or its verification exists)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return {'OK'} end
return {'HELD'}
