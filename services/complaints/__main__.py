"""`python -m services.complaints`: API, consumers, relay and timers in one process."""

from services.complaints.app import SPEC
from shared.runner import serve

serve(SPEC)
