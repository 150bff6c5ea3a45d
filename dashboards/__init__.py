"""Grafana dashboards generated from the site configuration — built in a later issue."""
