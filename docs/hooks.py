"""MkDocs hooks: the configuration reference, generated from the settings model itself
(so it cannot drift from the code)."""

from __future__ import annotations

import re
from typing import Any

from pydantic.fields import FieldInfo

from praxis.bus.settings import Settings

MARKER = "<!-- settings-table -->"


def _default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    if field.default_factory is not None:
        return f"`{field.default_factory()}`"  # type: ignore[call-arg]
    if field.default is None:
        return "unset"
    value = field.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _env_names(text: str) -> str:
    """A description that names another setting by its field name names its variable."""
    names = [n for n in Settings.model_fields if "_" in n]
    return re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: f"PRAXIS_{m[1].upper()}", text)


def settings_table() -> str:
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in sorted(Settings.model_fields.items()):
        text = _env_names(field.description or "").replace("|", "\\|")
        rows.append(f"| `PRAXIS_{name.upper()}` | {_default(field)} | {text} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_table())
    return markdown
