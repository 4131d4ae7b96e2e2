"""`search`: Docker Hub's search API, or a private registry's `_catalog`.

A term whose first component names a registry host (`localhost:5000/app`)
lists that registry's catalog and keeps the repositories whose names
contain the rest of the term. Any other term goes to Docker Hub's
`/v1/search`, as `docker search` does.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from dataclasses import dataclass

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.humanize import table
from layerlab.engine.registry.client import RegistryClient, RegistryError

log = logging.getLogger(__name__)

DOCKER_HUB_INDEX = "https://index.docker.io"
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
DESCRIPTION_WIDTH = 45
# Catalog pages to follow through `Link` headers before stopping.
MAX_CATALOG_PAGES = 50


@dataclass
class SearchRow:
    name: str
    description: str
    stars: int
    official: bool
    automated: bool


@dataclass
class SearchView:
    rows: list[SearchRow]
    no_trunc: bool = False

    def text(self) -> str:
        body = []
        for row in self.rows:
            description = " ".join(row.description.split())
            if not self.no_trunc and len(description) > DESCRIPTION_WIDTH:
                description = description[:DESCRIPTION_WIDTH - 3] + "..."
            body.append([row.name, description, str(row.stars),
                         "[OK]" if row.official else "", "[OK]" if row.automated else ""])
        return table(["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"], body)


def split_registry(term: str) -> tuple[str | None, str]:
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, term


def search(term: str, *, limit: int = DEFAULT_LIMIT, index_url: str = DOCKER_HUB_INDEX,
           root: str | None = None, no_trunc: bool = False) -> SearchView:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"invalid --limit {limit}: expected 1 to {MAX_LIMIT}")
    registry, text = split_registry(term.strip())
    if registry is not None:
        rows = _search_catalog(registry, text, limit, root)
    else:
        if not text:
            raise InvalidArgumentError("search needs a term: layerlab search TERM")
        rows = _search_index(index_url, text, limit, root)
    return SearchView(rows, no_trunc=no_trunc)


def _search_index(index_url: str, term: str, limit: int, root: str | None) -> list[SearchRow]:
    host = index_url.split("://", 1)[-1].split("/", 1)[0]
    client = RegistryClient(host, root=root, use_stored_credentials=False)
    query = f"/v1/search?q={_quote(term)}&n={limit}"
    try:
        response = client.request("GET", index_url.rstrip("/") + query)
        document = json.loads(response.read())
    except ValueError as error:
        raise RegistryError(f"search at {index_url} returned invalid JSON: {error}") from None
    finally:
        client.close()
    rows = []
    for result in (document.get("results") or [])[:limit]:
        rows.append(SearchRow(result.get("name", ""), result.get("description") or "",
                              int(result.get("star_count") or 0), bool(result.get("is_official")),
                              bool(result.get("is_automated"))))
    return rows


def _search_catalog(registry: str, text: str, limit: int, root: str | None) -> list[SearchRow]:
    client = RegistryClient(registry, root=root)
    client.add_scope("catalog", "*", kind="registry")
    names: list[str] = []
    path = f"/v2/_catalog?n={MAX_LIMIT}"
    try:
        for _ in range(MAX_CATALOG_PAGES):
            response = client.request("GET", path)
            try:
                names.extend(json.loads(response.read()).get("repositories") or [])
            except ValueError as error:
                raise RegistryError(f"catalog of {registry} is not valid JSON: {error}") from None
            link = re.search(r"<([^>]+)>", response.getheader("Link", "") or "")
            if not link:
                break
            path = link.group(1)
    finally:
        client.close()
    matches = [name for name in names if text in name]
    return [SearchRow(f"{registry}/{name}", "", 0, False, False) for name in matches[:limit]]


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")
