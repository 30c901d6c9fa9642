"""Dataverse Web API client: the OData transport (``_client``), its status table (``_errors``) and the ``$batch``
format (``_batch``). The event-management schema built on it is ``shared.crm``."""

from shared.dataverse._batch import BatchResult
from shared.dataverse._client import API_PATH, MAX_BATCH_OPERATIONS, DataverseClient
from shared.dataverse._errors import STATUS_ERRORS
from shared.dataverse._query import query_pages

__all__ = ["API_PATH", "MAX_BATCH_OPERATIONS", "STATUS_ERRORS", "BatchResult", "DataverseClient", "query_pages"]
