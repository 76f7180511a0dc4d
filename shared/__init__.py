"""Steward's shared platform: contracts, messaging, persistence, web and dev tooling."""
