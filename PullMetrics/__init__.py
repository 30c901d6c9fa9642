"""Timer trigger: pull ON24 attendee metrics into CRM check-ins for every configured org."""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints.timers import run_pull_metrics


def main(timer: func.TimerRequest) -> None:
    run_pull_metrics(get_app(), past_due=timer.past_due)
