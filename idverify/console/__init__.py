"""The auditor's console: a read-only web page over a tenant's audit log, on a port of its own.

``console.server`` serves it (aiohttp, imported only when the console is on); the page itself,
its scripts and styles ship in ``static/`` and the browser checks every proof it shows.
"""

__all__: list[str] = []
