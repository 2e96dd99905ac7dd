"""Fault tests: the engine against hostile CRMs and failing services, with real processes."""
