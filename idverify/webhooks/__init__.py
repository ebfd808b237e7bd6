"""Webhooks: a tenant's events pushed to its receivers in the Standard Webhooks format.

``signing``: secrets and signatures; ``destinations``: which URLs a subscription may name (no
SSRF); ``subscriptions``: the subscriptions in Redis; ``delivery``: the workers that deliver
each subscription's events in order, at least once.
"""
