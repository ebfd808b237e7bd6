-- GetVerification on one node (docs/ARCHITECTURE.md, "3.5 The reads followed by one write"):
-- its read (get_verification.lua, a function composed before this body by scripts.py) and the
-- read's accounting (record_reads in the prelude) in one script; step by step the accounting is
-- reads_record.lua's, after the read.
-- KEYS: verification, audit log
-- ARGV: request json, then the read spec (READ_SPEC_SIZE values; none: no accounting)
local recording = #ARGV > 1
local read = get_verification(KEYS, {ARGV[1], recording and '1' or '0'})
if read[1] ~= 'OK' then return read end
if recording and read[3] ~= '' then
  local base = string.sub(KEYS[2], 1, -#'audit:log' - 1)
  record_reads(base, read_spec(ARGV, 2), {read[3]}, read[4] ~= '' and {read[4]} or {})
end
return {'OK', read[2]}
