-- Answers whether a hash still holds the values a caller remembers of it: a chain's first step,
-- so that steps written from a memo run only while the memo is true, and nothing runs otherwise.
-- KEYS: the hash
-- ARGV: field, value, field, value, ... (a field the hash lacks holds '')
-- Returns {'OK'} | {'CHANGED'}
for i = 1, #ARGV, 2 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[i + 1] then return {'CHANGED'} end
end
return {'OK'}
