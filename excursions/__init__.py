"""Excursion record store, audit trail and QA review app — built in issue 5."""
