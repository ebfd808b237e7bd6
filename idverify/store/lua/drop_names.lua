-- A cancellation's third step, in the tenant's slot, run only after cancel_identity.lua answered
-- LAST: an organization's names are protected while an account is bound to it, and leave the
-- index of verified names with the last one. A re-indexing runs it too, after move_settle.lua
-- answered LAST (the last members, cancelled while the move copied them, dropped there: their
-- cancellations' identity steps ran on the old ref and dropped nothing). Idempotent: a repeat
-- finds them gone.
-- KEYS: the tenant's orgname index, the organization's orgnames:<tag>
-- ARGV: its claim tag
drop_org_names(KEYS[1], KEYS[2], ARGV[1])
return {'OK'}
