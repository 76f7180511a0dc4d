"""HTTP side of the platform: app factory, auth, errors, health and metrics."""
