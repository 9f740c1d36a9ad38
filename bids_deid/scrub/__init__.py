"""Scrubbers: pure functions from (input, profile, pseudonym context) to output."""
