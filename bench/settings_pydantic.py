"""config.py's settings through pydantic-settings, for ``bench/import_cost.py`` to weigh.

    python -m venv /tmp/pyd && /tmp/pyd/bin/pip install pydantic-settings
    PYTHONPATH=bench:.venv/lib/python3.11/site-packages .venv/bin/python bench/import_cost.py \
        --python /tmp/pyd/bin/python --runs 21 \
        --statement "from idverify.config import load_settings; load_settings(environ={})" \
        --statement "import settings_pydantic"

A BaseSettings with the same fields, types and defaults as ``idverify.config.Settings`` (its
sections are config.py's own dataclasses, which pydantic validates as they are), read from the
``IDVERIFY_*`` environment with ``__`` between section and name, then built once. It is what
adopting the library would cost at start-up at the least: it keeps none of config.py's one-line
messages (pydantic's own are several lines) nor its checks across settings. pydantic-settings is
not a dependency, so mypy does not check this file (pyproject.toml's exclude).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from idverify import config


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=config.ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )


def _fields() -> dict[str, Any]:
    hints = typing.get_type_hints(config.Settings)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(config.Settings):
        # A tenant's table is parsed by domain/methods.py whatever reads the file.
        kind = Mapping[str, Any] if item.name == "tenants" else hints[item.name]
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        fields[item.name] = (kind, default)
    return fields


PydanticSettings = create_model("PydanticSettings", __base__=_Base, **_fields())
SETTINGS = PydanticSettings()
