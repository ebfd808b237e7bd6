"""The ``idverify`` command line, every command in one place.

``app`` holds the table of commands, the parser and ``main`` (with ``serve``, ``clients`` and
``health``); each other module adds one command group: ``lifecycle`` (``keys``, ``erasure``, and
the store the on-host commands open), ``tenants``, ``incidents``, ``display_names``,
``webhooks`` (``webhooks``, ``events``), ``geo``, ``vendors``, ``audit`` and ``backup``.
``client_options`` is how a command reaches a running server; ``health_probe`` asks its gRPC
health service.

Only ``app`` is imported with the package: a command's module is imported when it runs.
"""

from idverify.cli.app import main

__all__ = ["main"]
