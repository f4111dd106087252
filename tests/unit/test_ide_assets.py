"""GraphiQL and Swagger UI are served from the package: no address outside the edge."""

from __future__ import annotations

import re

from praxis.edge import ide


def test_graphiql_page_loads_nothing_from_a_cdn() -> None:
    page = ide.graphiql_html()
    outside = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert outside == [], (
        f"GraphiQL would load {outside}: strawberry-graphql changed its assets; "
        "run python deploy/vendor_graphiql.py"
    )
    assert page.count(f'"{ide.PREFIX}') == 7  # React, ReactDOM, js-cookie, GraphiQL, explorer


def test_every_served_file_exists_and_swagger_points_at_them() -> None:
    files = ide.files()
    assert all(path.is_file() for path in files.values())
    plugin = ide.swagger()
    for url in (plugin.js_url, plugin.css_url, plugin.standalone_preset_js_url):
        assert url.startswith(ide.PREFIX) and url.removeprefix(ide.PREFIX) in files
