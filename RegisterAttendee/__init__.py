"""Service Bus trigger: register, update or cancel one CRM registration in ON24, exactly once.

Returning completes the message; raising (transient faults only) makes Service Bus redeliver it.
"""

import azure.functions as func

from shared.app import get_app
from shared.entrypoints.queue import process_registration_message


def main(msg: func.ServiceBusMessage) -> None:
    process_registration_message(msg, get_app())
