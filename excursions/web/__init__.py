"""The QA web app: JSON API (and, to come, server-rendered pages)."""
