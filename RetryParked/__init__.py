"""Timer trigger: re-drive registrations parked during an ON24 or CRM outage, when they are due."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints.timers import run_retry_parked


def main(timer: func.TimerRequest) -> None:
    run_retry_parked(get_app())
