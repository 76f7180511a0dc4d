"""Test harness: real infrastructure for tests, event publishing and awaiting helpers."""
