"""`python -m services.profile`: API, consumers, relay and timers in one process."""

from services.profile.app import SPEC
from shared.runner import serve

serve(SPEC)
