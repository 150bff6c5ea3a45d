"""Alarm routing, escalation, on-call and delivery — built in a later issue."""
