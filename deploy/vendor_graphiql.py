"""Copy GraphiQL's browser assets into the package, so the IDE at /graphql works offline.

Strawberry's GraphiQL page loads React, GraphiQL and its explorer plugin from a CDN, each
pinned with a Subresource Integrity hash. No maintained PyPI package ships these files, so
this script takes them from the npm registry's tarballs of exactly those versions, checks
each against the page's own sha384, and writes them to ``edge/static/graphiql/``. The edge
then serves the page with those URLs pointing at its own copies (``praxis.edge.ide``).

Run it after upgrading strawberry-graphql if ``tests/test_ide_assets.py`` says to:

    python deploy/vendor_graphiql.py
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

TARGET = Path(__file__).resolve().parent.parent / "edge" / "static" / "graphiql"
ASSET = re.compile(
    r'(?:src|href)="https://unpkg\.com/(?P<package>(?:@[^/@"]+/)?[^/@"]+)@(?P<version>[^/"]+)/'
    r'(?P<path>[^"]+)"\s+integrity="(?P<integrity>sha384-[^"]+)"'
)


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def main() -> int:
    TARGET.mkdir(parents=True, exist_ok=True)
    page = get_graphql_ide_html("graphiql")
    for found in ASSET.finditer(page):
        package, version, path = found["package"], found["version"], found["path"]
        tarball = f"https://registry.npmjs.org/{package}/-/{package.split('/')[-1]}-{version}.tgz"
        with urllib.request.urlopen(tarball, timeout=60) as answer:
            packed = answer.read()
        with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
            member = tar.extractfile(f"package/{path}")
            assert member is not None, f"{path} missing from {tarball}"
            data = member.read()
        if sri(data) != found["integrity"]:
            print(f"{package}@{version}/{path}: not the file the page expects", file=sys.stderr)
            return 1
        name = path.rsplit("/", 1)[-1]
        if name in {"style.css", "index.umd.js"}:  # the explorer plugin's generic names
            name = f"explorer-{name}"
        (TARGET / name).write_bytes(data)
        print(f"{package}@{version}/{path} -> edge/static/graphiql/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
