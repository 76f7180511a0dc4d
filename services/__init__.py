"""The four Steward services; each runs with `python -m services.<name>`."""
