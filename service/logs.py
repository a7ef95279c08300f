"""Logging for every process (`crossings serve`, its workers, the other commands): one format,
JSON lines or text (CROSSINGS_LOG_FORMAT), uvicorn's own loggers included.

What is never logged: API keys, notes, positions, query strings. The access log (one line per
request, service/api/observe.py) carries the route template, never the path or its query.
"""

from __future__ import annotations

from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from service.settings import Settings

ACCESS_LOGGER = "crossings.access"


def log_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary (also given to uvicorn as its ``log_config``)."""
    formatters: dict[str, Any] = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # uvicorn adds a copy of each message with terminal colours
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    }
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {settings.log_format: formatters[settings.log_format]},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": settings.log_format,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # uvicorn's loggers go through the root handler: the same format everywhere.
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            # Replaced by crossings.access (uvicorn's line holds the path and its query string).
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            ACCESS_LOGGER: {"handlers": [], "level": level, "propagate": True},
        },
    }
