"""Reading many rows of a table: an OData ``$filter`` query read page by page (``Prefer: odata.maxpagesize``,
then each ``@odata.nextLink`` unchanged until there is none), each page one call within the client's retry budget.

A ``nextLink`` must point back into the same org's Web API: the bearer token never goes to another host.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from shared.dataverse._client import API_PATH, DataverseClient
from shared.dataverse._odata import READ_HEADERS, check_expand, check_set, decode_object, query_string, select_clause
from shared.errors import TransientError

MAX_PAGE_SIZE: Final = 5000


def query_pages(
    client: DataverseClient,
    entity_set: str,
    *,
    select: Sequence[str],
    where: str,
    expand: str | None = None,
    page_size: int = MAX_PAGE_SIZE,
) -> Iterator[list[dict[str, Any]]]:
    """The rows matching ``where`` (an OData ``$filter``), one page (a list of rows) at a time.

    Raises:
        ValueError: malformed names, an empty filter or a page size outside 1-5,000 (before any I/O).
        InvalidDataError: Dataverse refused the query; ConfigError, TransientError: as ``get_row``.
    """
    check_set(entity_set)
    if not where or any(ch in where for ch in "&#?\r\n"):
        raise ValueError("malformed $filter")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}")
    params = [("$select", select_clause(select)), ("$filter", where)]
    if expand:
        params.append(("$expand", check_expand(expand)))
    url: str | None = f"{client.url}{API_PATH}{entity_set}{query_string(params)}"
    headers = {**READ_HEADERS, "Prefer": f"odata.maxpagesize={page_size}"}
    while url is not None:
        body = client.exchange("GET", url, entity_set=entity_set, row_id=None, headers=headers, decode=decode_object)
        rows = body.get("value")
        if not isinstance(rows, list):
            raise TransientError(f"Dataverse GET {entity_set}: the answer has no value list")
        yield [row for row in rows if isinstance(row, dict)]
        link = body.get("@odata.nextLink")
        if link is None:
            return
        if not isinstance(link, str) or not link.startswith(f"{client.url}{API_PATH}{entity_set}?"):
            raise TransientError(f"Dataverse GET {entity_set}: a nextLink outside this org's Web API was refused")
        url = link
