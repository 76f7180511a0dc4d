"""`python -m services.notifications`: API, consumers, relay and timers in one process."""

from services.notifications.app import SPEC
from shared.runner import serve

serve(SPEC)
