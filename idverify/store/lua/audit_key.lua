-- Records in a tenant's audit log that a new key signs it, once per key: `idverify audit
-- rotate-key` writes these entries before it records the key, and a run that failed part-way
-- is run again, so a tenant that has its entry is skipped.
-- KEYS: the key id the tenant's log last recorded, audit log
-- ARGV: new key id, previous key id, request json
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
-- Key ids are fingerprints of public keys (signed heads carry them): nothing secret.
audit(KEYS[2], cjson.decode(ARGV[3]), {type = 'audit.key_rotated', outcome = 'rotated', reason = '',
  key_id = ARGV[1], previous_key_id = ARGV[2]})
return 1
