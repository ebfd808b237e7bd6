-- A binding's organization names, in the tenant's slot (docs/ARCHITECTURE.md, "3.1 Binding"):
-- run after a commit that bound (bind_commit.lua) an account whose verification establishes its
-- organization's claim, the names' forms kept by the identity's step (bind_place.lua's 'names').
-- Before the confirm, whose intent 'place:<vf id>' keeps them until it has run: a repair of that
-- intent runs this again, which changes nothing. A cancellation that dropped the names between
-- the commit and this step is caught by the confirm after it (bind_confirm.lua: LAST), whose
-- names' step drops them again.
-- KEYS: the tenant's orgname index, the organization's orgnames:<tag>
-- ARGV: its claim tag, the names' keyed hashes (comma-separated)
-- Replies: {'OK'}
index_org_names(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {'OK'}
