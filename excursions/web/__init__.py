"""The QA web app: the JSON API and the server-rendered pages."""
