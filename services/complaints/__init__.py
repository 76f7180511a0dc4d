"""Complaints: grading, first-contact ownership, SLA clocks, escalation, callbacks, compensation."""
