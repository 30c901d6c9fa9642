"""ON24: the REST client (``_client``), its wire models (``_models``), what it sends (``_forms``), its status table
(``_errors``), and the adapter that makes it the app's webinar provider (``provider``).

Only this package and the composition root (``shared.app``) use ON24's names; the use cases speak
``shared.webinars``.
"""

from shared.on24._client import BASE_URLS, DEFAULT_RETRY, DEFAULT_TIMEOUT, On24Client
from shared.on24._errors import STATUS_ERRORS
from shared.on24._forms import FIELD_MAX_LENGTHS, MAX_PAGE_SIZE, spreadsheet_safe
from shared.on24._models import Attendee, On24Credentials, On24Event, Registrant, RegistrantFields

__all__ = [
    "BASE_URLS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "FIELD_MAX_LENGTHS",
    "MAX_PAGE_SIZE",
    "STATUS_ERRORS",
    "Attendee",
    "On24Client",
    "On24Credentials",
    "On24Event",
    "Registrant",
    "RegistrantFields",
    "spreadsheet_safe",
]
