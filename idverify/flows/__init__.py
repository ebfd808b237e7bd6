"""Use cases: each orchestrates domain, verifiers, privacy and store for one kind of request."""
