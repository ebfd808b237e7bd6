"""Logging to stderr as text or JSON lines.

Log records carry messages written by idverify's own code, which never formats personal data
into them; request values are not logged at all.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from idverify.observability.telemetry import current_ids, request_id_var, safe_attributes


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace and span ids, request id."""

    def format(self, record: logging.LogRecord) -> str:
        """Renders one record as a JSON line."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id, span_id = current_ids()
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = span_id
        # The request id is caller-chosen text: it passes the same filter as span attributes.
        request_id = safe_attributes({"idverify.request_id": request_id_var.get()}).get("idverify.request_id")
        if isinstance(request_id, str) and request_id:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Sends idverify's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
