"""Excursion record store, timeline, audit trail, users and signatures, and the QA app."""
