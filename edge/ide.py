"""The browser tools the edge serves — GraphiQL at ``/graphql`` and Swagger UI at
``/schema/swagger`` — with their scripts and styles from the installed package, never a CDN,
so that both work on a machine without internet access.

Swagger UI's files come from ``litestar-offline-docs`` (a PyPI package that ships them for
Litestar). GraphiQL's are in ``edge/static/graphiql/``, copied from the npm registry by
``deploy/vendor_graphiql.py`` and checked against the integrity hashes of Strawberry's own
GraphiQL page: each CDN address in that page whose file we hold is pointed at our copy.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from functools import cache
from pathlib import Path

import litestar_offline_docs
from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from strawberry.http.ides import get_graphql_ide_html

log = logging.getLogger(__name__)

PREFIX = "/ui/vendor/"
GRAPHIQL = Path(__file__).parent / "static" / "graphiql"
SWAGGER = Path(litestar_offline_docs.__file__).parent / "static"
MEDIA = {".js": "text/javascript", ".css": "text/css"}
_CDN = re.compile(r'"https://unpkg\.com/[^"]+"(?=\s+integrity="(sha384-[^"]+)")')


@cache
def files() -> dict[str, Path]:
    """Every file served under ``/ui/vendor/``, by name (nothing else on disk is)."""
    served = {p.name: p for p in GRAPHIQL.iterdir() if p.suffix in MEDIA}
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        served[name] = SWAGGER / name
    return served


def _integrity(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


@cache
def graphiql_html() -> str:
    """Strawberry's GraphiQL page with each CDN address whose file we hold (same sha384)
    pointing at our copy; an address we do not hold (a Strawberry newer than our copies)
    stays, and is logged, so the page still works where there is a network."""
    ours = {_integrity(p): PREFIX + p.name for p in files().values() if p.parent == GRAPHIQL}

    def local(found: re.Match[str]) -> str:
        served = ours.get(found[1])
        if served is None:
            log.warning(
                "GraphiQL asset %s is not in the package; run deploy/vendor_graphiql.py",
                found[0],
            )
            return found[0]
        return f'"{served}"'

    return _CDN.sub(local, get_graphql_ide_html("graphiql"))


def swagger() -> SwaggerRenderPlugin:
    """Swagger UI at ``/schema/swagger`` on the package's own copies of its files."""
    return SwaggerRenderPlugin(
        js_url=PREFIX + "swagger-ui-bundle.js",
        css_url=PREFIX + "swagger-ui.css",
        standalone_preset_js_url=PREFIX + "swagger-ui-standalone-preset.js",
        favicon="<link rel='icon' type='image/svg+xml' href='/favicon.ico'>",
    )


@get(PREFIX + "{name:str}", include_in_schema=False, cache=False)
async def vendor_file(name: str) -> Response[bytes]:
    """One of the browser tools' scripts or styles."""
    path = files().get(name)
    if path is None:
        raise NotFoundException(f"no file {name[:40]!r} here")
    return Response(
        path.read_bytes(),
        media_type=MEDIA[path.suffix],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
