-- Whether an identity rests where a verification found it, asked before an account's step that
-- compares identity refs and is given no identity key: a guardian's consent step by step
-- (docs/ARCHITECTURE.md, "3.1 Binding", "A guardian's consent"), whose GUARDIAN_IS_SUBJECT
-- compares the guardian's ref with the verification's. On one node guardian.lua asks the same
-- (identity_move_reply) inside its script. A read: it writes nothing.
-- KEYS: the identity
-- ARGV: the name binding the verification saw there ('' when its start found no record)
-- Returns {'OK'} | {'RETRY'} (a move of it in flight) | {'MOVED'} (the caller points it anew)
local moved = identity_move_reply(KEYS[1], {name_binding_seen = ARGV[1]})
if moved then return moved end
return {'OK'}
