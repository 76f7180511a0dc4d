"""`python -m services.tiering`: API, consumers, relay and timers in one process."""

from services.tiering.app import SPEC
from shared.runner import serve

serve(SPEC)
