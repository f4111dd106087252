"""``python -m praxis.edge.openapi``: print the edge's OpenAPI document (JSON), as
``GET /schema/openapi.json`` serves it, without a running edge or bus.

``schemas/openapi.json`` is its output (a test keeps the two equal); the documentation
site renders its HTTP reference from that file.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_jsonable_python

from praxis.bus.settings import Settings
from praxis.edge.app import create_app, finish_document


def document() -> dict[str, Any]:
    app = create_app(Settings())
    finish_document(app)
    written = json.dumps(app.openapi_schema.to_schema(), default=to_jsonable_python)
    schema: dict[str, Any] = json.loads(written)
    return schema


def main() -> None:
    print(json.dumps(document(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
