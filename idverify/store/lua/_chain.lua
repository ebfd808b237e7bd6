-- Runs the CHAIN_STEPS (scripts.chain_source puts each script's body in one) in turn, as one
-- atomic step: a step runs only when the one before answered a reply it may follow.
-- KEYS: every step's keys, in order
-- ARGV: layout json [[key count, argument count, [replies to go on after]], ...], then every
--   step's arguments, in order
-- Returns the replies of the steps that ran, in order.
local layout = cjson.decode(ARGV[1])
local replies = {}
local k, a = 0, 1
for i, step in ipairs(layout) do
  local keys, args = {}, {}
  for j = 1, step[1] do keys[j] = KEYS[k + j] end
  for j = 1, step[2] do args[j] = ARGV[a + j] end
  k, a = k + step[1], a + step[2]
  local reply = CHAIN_STEPS[i](keys, args)
  replies[i] = reply
  local go = false
  for _, after in ipairs(step[3]) do
    if reply[1] == after then go = true end
  end
  if not go then break end
end
return replies
