"""Tests of the alerting service against real servers (SMTP, webhooks, Alertmanager)."""
