-- Reads fields of one account, in its bucket: the read before a tenant-wide step that is given
-- what it read (docs/ARCHITECTURE.md, "3.5 The reads followed by one write"), run on its own only
-- step by step. A read: it writes nothing.
-- KEYS: the account
-- ARGV: the fields
-- Returns {'OK', each field's value or nil, in ARGV's order}
local values = redis.call('HMGET', KEYS[1], unpack(ARGV))
table.insert(values, 1, 'OK')
return values
