"""Events for platforms: what happened, read from the outbox each state change writes.

``accounts``: the sealed account id a request gives its events; ``outbox``: reading events
after a cursor; ``tail``: waking the streams of a worker when the outbox grows; ``streams``:
the per-principal budget of open streams.
"""
