-- GetVerification on one node (docs/ARCHITECTURE.md, "3.5 The reads followed by one write"):
-- its read (get_verification.lua) and the read's accounting (reads_record.lua) in one script,
-- each a function composed before this body (scripts.py), as a Cluster runs them one by one.
-- KEYS: verification, audit log
-- ARGV: request json, then the read spec (READ_SPEC_SIZE values; none: no accounting)
local recording = #ARGV > 1
local read = get_verification(KEYS, {ARGV[1], recording and '1' or '0'})
if read[1] ~= 'OK' then return read end
if recording and read[3] ~= '' then
  local base = string.sub(KEYS[2], 1, -#'audit:log' - 1)
  reads_record({base .. 'readmin:open', base .. 'readmin:erased'}, recorded_args(2, {read[3]}, {read[4]}))
end
return {'OK', read[2]}
