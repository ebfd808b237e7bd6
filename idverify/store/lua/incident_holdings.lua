-- Counts what a page of one tenant's records holds, for an incident report (reads only).
-- KEYS: account, identity and verification records of the tenant, in any mix
-- ARGV: the kind of each key, in order, one letter a key: a(ccount), i(dentity), v(erification)
-- Returns the counts, in the order of COUNTED below. The records themselves are counted by the
-- caller, as the SCAN found them: an EXISTS a key would cost a third of this script's time.
local COUNTED = {
  'bound_accounts', 'accounts_ip_location', 'accounts_birth_date',
  'identities', 'identities_name_binding',
  'vf_document_number', 'vf_name_binding', 'vf_birth_date', 'vf_account_id',
  'vf_phone', 'vf_vendor_challenge',
}
local counts = {}
for _, name in ipairs(COUNTED) do counts[name] = 0 end
local function add(name, present) if present then counts[name] = counts[name] + 1 end end
local kinds = ARGV[1] or ''
for i, key in ipairs(KEYS) do
  local kind = string.sub(kinds, i, i)
  if kind == 'a' then
    local row = redis.call('HMGET', key, 'identity', 'ip_ms', 'birth_sealed')
    add('bound_accounts', row[1])
    add('accounts_ip_location', row[2])
    add('accounts_birth_date', row[3])
  elseif kind == 'i' then
    -- A forwarding record left by a pepper move names the identity's new record: not a person.
    local row = redis.call('HMGET', key, 'moved_to', 'name_binding')
    if not row[1] then
      add('identities', true)
      add('identities_name_binding', row[2])
    end
  elseif kind == 'v' then
    local row = redis.call('HMGET', key, 'identity', 'name_binding', 'birth_sealed', 'acct_sealed',
      'phone_ps_sealed', 'challenge_sealed')
    add('vf_document_number', row[1])
    add('vf_name_binding', row[2])
    add('vf_birth_date', row[3])
    add('vf_account_id', row[4])
    add('vf_phone', row[5])
    add('vf_vendor_challenge', row[6])
  end
end
local result = {}
for i, name in ipairs(COUNTED) do result[i] = counts[name] end
return result
