"""``python -m praxis.edge.openapi``: print the edge's OpenAPI document (JSON), as
``GET /schema/openapi.json`` serves it, without a running edge or bus.

``schemas/openapi.json`` is its output (a test keeps the two equal); the documentation
site renders its HTTP reference from that file.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from pydantic_core import to_jsonable_python

from praxis.bus.settings import Settings
from praxis.edge.app import create_app


def document() -> dict[str, Any]:
    app = create_app(Settings())
    for hook in app.on_startup:  # they finish the document (descriptions, responses)
        done = hook(app)
        assert not inspect.isawaitable(done)
    schema: dict[str, Any] = json.loads(json.dumps(app.openapi_schema.to_schema(), default=to_jsonable_python))
    return schema


def main() -> None:
    print(json.dumps(document(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
