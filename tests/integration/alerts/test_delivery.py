"""Delivery through apprise to a real SMTP server (aiosmtpd) and a real webhook receiver."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import smtplib
import socket
import textwrap
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from rich.console import Console

from alerts.delivery import (
    AppriseNotifier,
    CapturingNotifier,
    Message,
    Outcome,
    guessed_secrets,
    validate_url,
)
from alerts.smtp import EmbeddedSmtpServer, ReceivedMail
from devservers.webhook import WebhookServer
from envmon.commands.alerts_test import run_test, send_test_page
from envmon.config import parse_site
from envmon.netutil import free_port
from envmon.testing import FakeClock
from tests.unit.alerts.sites import freezer_site

PASSWORD = "Sup3r-s3cret-pw"  # a test secret that must never show up
TOKEN = "tk7Hq2ZsN9xVbW4p"
MESSAGE = Message(title="Freezer F-01: action alarm", body="Temperature −58.2 °C\nsecond line")
T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


@pytest.fixture
def smtp():
    with EmbeddedSmtpServer(accept_logins=True) as server:
        yield server


@pytest.fixture
def webhook():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def notifier():
    return AppriseNotifier(timeout_s=10)


def mailto(port: int, to: str = "alice@example.org", *, login: str = "") -> str:
    """Return a plain (no TLS) mailto URL to a local SMTP server."""
    return f"mailto://{login}127.0.0.1:{port}?to={to}&from=envmon@example.org"


class TestMail:
    async def test_delivered_with_the_servers_reply(self, notifier, smtp):
        """A message sent through mailto:// arrives whole and the outcome quotes the 250 reply."""
        outcome = await notifier.send(mailto(smtp.port), MESSAGE)
        assert outcome.ok
        assert outcome.detail.startswith("SMTP 250 2.0.0 Ok: queued as ")
        [mail] = smtp.messages
        assert mail.recipients == ("alice@example.org",)
        assert mail.mail_from == "envmon@example.org"
        assert mail.subject == MESSAGE.title
        assert mail.body == MESSAGE.body

    @pytest.mark.parametrize("code", [451, 554])
    async def test_relay_refusal_gives_its_code(self, notifier, smtp, code):
        """A relay answering the message with an error gives a failed outcome with its code."""
        smtp.fail_with(code)
        outcome = await notifier.send(mailto(smtp.port), MESSAGE)
        assert not outcome.ok
        assert outcome.detail.startswith(f"SMTP {code} ")
        assert smtp.messages == []
        assert smtp.refused == 1

    async def test_relay_back_after_refusing(self, notifier, smtp):
        """Once the relay accepts again the next attempt is delivered."""
        smtp.fail_with(451)
        assert not (await notifier.send(mailto(smtp.port), MESSAGE)).ok
        smtp.fail_with(None)
        assert (await notifier.send(mailto(smtp.port), MESSAGE)).ok
        assert len(smtp.messages) == 1

    async def test_server_down_is_connection_refused(self, notifier, smtp):
        """A stopped SMTP server gives a failed outcome saying the connection was refused."""
        port = smtp.port
        smtp.stop()
        outcome = await notifier.send(mailto(port), MESSAGE)
        assert outcome == Outcome(False, "connection refused")

    async def test_login_is_used(self, notifier, smtp):
        """Credentials in the URL are used to log in (the server keeps the user name only)."""
        outcome = await notifier.send(mailto(smtp.port, login=f"envmon:{PASSWORD}@"), MESSAGE)
        assert outcome.ok
        assert [mail.login for mail in smtp.messages] == ["envmon"]

    async def test_login_refused_without_auth(self, notifier):
        """A server that offers no AUTH fails a URL with credentials, saying why."""
        with EmbeddedSmtpServer() as server:
            outcome = await notifier.send(mailto(server.port, login="envmon:pw@"), MESSAGE)
        assert not outcome.ok
        assert "AUTH" in outcome.detail

    @pytest.mark.parametrize("scheme", ["mailto", "json"])
    async def test_silent_server_times_out(self, scheme):
        """A server that accepts the connection and never answers gives "timed out"."""
        with socket.create_server(("127.0.0.1", 0)) as silent:
            port = silent.getsockname()[1]
            url = mailto(port) if scheme == "mailto" else f"json://127.0.0.1:{port}/hook"
            outcome = await AppriseNotifier(timeout_s=0.5).send(url, MESSAGE)
        assert outcome == Outcome(False, "timed out after 0.5 s")


class TestWebhook:
    async def test_accepted_with_http_status(self, notifier, webhook):
        """A json:// webhook answering 200 gets the message; the outcome is "HTTP 200"."""
        outcome = await notifier.send(webhook.url("/envmon"), MESSAGE)
        assert outcome == Outcome(True, "HTTP 200")
        [request] = webhook.requests
        assert (request.method, request.path) == ("POST", "/envmon")
        assert request.headers["Content-Type"] == "application/json"
        assert request.json["title"] == MESSAGE.title
        assert request.json["message"] == MESSAGE.body

    async def test_unavailable_then_back(self, notifier, webhook):
        """Each call is one attempt: 503 twice, then 200, over three calls and three requests."""
        webhook.answer(503, times=2)
        outcomes = [await notifier.send(webhook.url(), MESSAGE) for _ in range(3)]
        assert outcomes == [
            Outcome(False, "HTTP 503"),
            Outcome(False, "HTTP 503"),
            Outcome(True, "HTTP 200"),
        ]
        assert [request.status for request in webhook.requests] == [503, 503, 200]

    async def test_client_error(self, notifier, webhook):
        """A 404 is a failure with its status."""
        webhook.answer(404)
        assert await notifier.send(webhook.url(), MESSAGE) == Outcome(False, "HTTP 404")

    async def test_form_webhook(self, notifier, webhook):
        """form:// posts the message as a form and reports the status too."""
        outcome = await notifier.send(webhook.url("/form", scheme="form"), MESSAGE)
        assert outcome == Outcome(True, "HTTP 200")
        assert b"title=Freezer" in webhook.requests[0].body

    async def test_closed_port_is_connection_refused(self, notifier):
        """A webhook nobody listens on gives "connection refused"."""
        outcome = await notifier.send(f"json://127.0.0.1:{free_port()}/hook", MESSAGE)
        assert outcome == Outcome(False, "connection refused")

    async def test_invalid_url_is_a_failed_outcome(self, notifier):
        """A URL apprise cannot use fails without a send and without quoting the URL."""
        outcome = await notifier.send(f"json://user:{PASSWORD}@", MESSAGE)
        assert not outcome.ok
        assert outcome.detail.startswith("invalid URL")
        assert PASSWORD not in outcome.detail


class TestConcurrency:
    async def test_each_send_gets_its_own_outcome(self, notifier, smtp, webhook):
        """Twenty concurrent sends to mixed servers each get the outcome of their own server."""
        with EmbeddedSmtpServer(fail_code=451) as refusing, WebhookServer() as unavailable:
            unavailable.answer(503, times=100)
            dead = free_port()
            cases: list[tuple[str, str, bool]] = []
            for n in range(4):
                cases += [
                    (mailto(smtp.port, f"p{n}@example.org"), "SMTP 250 ", True),
                    (mailto(refusing.port, f"q{n}@example.org"), "SMTP 451 ", False),
                    (webhook.url(f"/ok/{n}"), "HTTP 200", True),
                    (unavailable.url(f"/down/{n}"), "HTTP 503", False),
                    (f"json://127.0.0.1:{dead}/dead/{n}", "connection refused", False),
                ]
            outcomes = await asyncio.gather(*(notifier.send(url, MESSAGE) for url, _, _ in cases))
        for (url, detail, ok), outcome in zip(cases, outcomes, strict=True):
            assert outcome.ok is ok, (url, outcome)
            assert outcome.detail.startswith(detail), (url, outcome)
        assert sorted(m.recipients[0] for m in smtp.messages) == [
            f"p{n}@example.org" for n in range(4)
        ]
        assert sorted(r.path for r in webhook.requests) == [f"/ok/{n}" for n in range(4)]


class TestSecrets:
    async def test_password_never_in_details_or_logs(self, notifier, smtp, caplog):
        """A password in a mailto URL appears in no outcome and no log record, at any level."""
        caplog.set_level(1)
        url = mailto(smtp.port, login=f"envmon:{PASSWORD}@")
        outcomes = [await notifier.send(url, MESSAGE)]
        smtp.fail_with(554)
        outcomes.append(await notifier.send(url, MESSAGE))
        port = smtp.port
        smtp.stop()
        outcomes.append(await notifier.send(mailto(port, login=f"envmon:{PASSWORD}@"), MESSAGE))
        assert [outcome.ok for outcome in outcomes] == [True, False, False]
        assert all(PASSWORD not in outcome.detail for outcome in outcomes)
        assert any(r.name == "apprise" and r.levelno < logging.DEBUG for r in caplog.records)
        assert all(PASSWORD not in record.getMessage() for record in caplog.records)

    async def test_token_in_a_webhook_path_never_logged(self, notifier, webhook, caplog):
        """A token in a webhook's path is masked in apprise's and urllib3's log lines."""
        caplog.set_level(1)
        webhook.answer(503)
        outcome = await notifier.send(webhook.url(f"/hooks/{TOKEN}"), MESSAGE)
        assert outcome == Outcome(False, "HTTP 503")
        assert webhook.requests[0].path == f"/hooks/{TOKEN}"
        assert any(r.name == "urllib3.connectionpool" for r in caplog.records)
        assert all(TOKEN not in record.getMessage() for record in caplog.records)

    def test_validation_quotes_no_token(self, caplog):
        """A refused token is neither quoted in the reason nor logged."""
        caplog.set_level(1)
        reason = validate_url(f"twilio://AC{'a' * 32}:{TOKEN}!@15551234567/15557654321")
        assert reason is not None
        assert "Authentication Token" in reason
        assert TOKEN not in reason
        assert all(TOKEN not in record.getMessage() for record in caplog.records)

    def test_guessed_secrets(self):
        """The password, tokens in the host or path and long query values count as secret."""
        secrets = guessed_secrets(f"slack://{TOKEN}/B1BRTD4JD/x/#general?botname=envmon-bot")
        assert {TOKEN, "B1BRTD4JD", "#general", "envmon-bot"} <= secrets
        assert "x" not in secrets
        assert "pw" in guessed_secrets("mailto://u:pw@smtp.example.org")
        assert "smtp.example.org" not in guessed_secrets("mailto://u:pw@smtp.example.org")


VALID_URLS = [
    f"twilio://AC{'a' * 32}:{'b' * 32}@15551234567/15557654321",
    "twilio://AC${TWILIO_SID}:${TWILIO_TOKEN}@15551234567/15557654321",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
    "slack://${SLACK_A}/${SLACK_B}/${SLACK_C}/#alarms",
    "workflows://prod-01.westus.logic.azure.com:443/a1b2c3d4e5f6/Sig_-abc123",
    "ntfys://ntfy.example.org/envmon-alerts",
    "ntfy://envmon-alerts?priority=max",
    f"pover://u{'a' * 29}@a{'b' * 29}",
    "mailtos://envmon:${SMTP_PASSWORD}@smtp.example.org:587?to=alice@example.org",
    "json://127.0.0.1:9000/envmon",
    "jsons://hooks.example.org/envmon",
    "form://127.0.0.1:9000/envmon",
]
INVALID_URLS = [
    (f"twilio://XX{'a' * 32}:{'b' * 32}@15551234567/15557654321", "Account SID"),
    (f"twilio://AC{'a' * 32}@15551234567/15557654321", "Authentication Token"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/", "(third) Token"),
    ("workflows://prod-01.westus.logic.azure.com:443/a1b2c3d4e5f6", "Signature"),
    ("ntfy://envmon-alerts?mode=bogus", "ntfy Mode"),
    (f"pover://{'a' * 30}", "User Key"),
    ("msteams://team/token-a/token-b/token-c", "no service for msteams://"),
    ("json://", "cannot read this JSON URL"),
    ("not a url", "not an apprise URL"),
    ("", "empty"),
]


class TestValidation:
    @pytest.mark.parametrize("url", VALID_URLS)
    def test_accepted(self, url):
        """Well-formed URLs of fixed-host services and local endpoints are accepted."""
        assert validate_url(url) is None

    @pytest.mark.parametrize(("url", "reason"), INVALID_URLS)
    def test_refused(self, url, reason):
        """Malformed URLs are refused with a reason naming what is wrong."""
        problem = validate_url(url)
        assert problem is not None
        assert reason in problem

    def test_refusal_does_not_echo_url_parts(self):
        """The reason for a refused URL quotes none of its tokens."""
        problem = validate_url("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnl!azkc/#general")
        assert problem is not None
        assert "T1JJ3T3L2" not in problem
        assert "TIiajkdnl" not in problem


class TestCapturingNotifier:
    async def test_keeps_what_it_is_given(self):
        """The capturing notifier keeps each (url, message) and answers "captured"."""
        notifier = CapturingNotifier()
        assert await notifier.send("json://a/b", MESSAGE) == Outcome(True, "captured")
        assert notifier.sent == [("json://a/b", MESSAGE)]
        assert notifier.messages("json://a/b") == [MESSAGE]
        assert notifier.messages("json://other") == []

    async def test_scripted_outcome(self):
        """The outcome it answers can be set."""
        notifier = CapturingNotifier(Outcome(False, "HTTP 503"))
        assert await notifier.send("json://a/b", MESSAGE) == Outcome(False, "HTTP 503")


def _send_mail(port: int, subject: str = "Hello", to: str = "bob@example.org") -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "envmon@example.org"
    message["To"] = to
    message.set_content("line one\nline two\n")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(message)


class TestEmbeddedSmtpServer:
    def test_keeps_messages_with_the_injected_time(self):
        """Each accepted message is kept with envelope, subject, body and the clock's time."""
        clock = FakeClock(T0)
        seen: list[ReceivedMail] = []
        with EmbeddedSmtpServer(clock=clock, on_message=seen.append) as server:
            assert server.port > 0
            _send_mail(server.port)
            [mail] = server.messages
        assert mail == seen[0]
        assert (mail.mail_from, mail.recipients) == ("envmon@example.org", ("bob@example.org",))
        assert (mail.subject, mail.body) == ("Hello", "line one\nline two")
        assert mail.received_at == T0
        assert mail.login is None

    def test_failure_code_switchable(self):
        """While failing every message is answered with the code; afterwards they are kept."""
        with EmbeddedSmtpServer() as server:
            server.fail_with(421)
            assert server.failure_code == 421
            with pytest.raises(smtplib.SMTPDataError) as refused:
                _send_mail(server.port)
            assert refused.value.smtp_code == 421
            server.fail_with(None)
            _send_mail(server.port)
            assert (len(server.messages), server.refused) == (1, 1)

    def test_refuses_codes_that_are_not_failures(self):
        """Only 4xx and 5xx codes can be failures."""
        server = EmbeddedSmtpServer()
        with pytest.raises(ValueError, match="between 400 and 599"):
            server.fail_with(250)

    def test_broken_callback_does_not_lose_mail(self, caplog):
        """A callback that raises is logged; the message is still accepted and kept."""

        def broken(mail: ReceivedMail) -> None:
            raise RuntimeError("boom")

        with EmbeddedSmtpServer(on_message=broken) as server:
            _send_mail(server.port)
            assert len(server.messages) == 1
        assert "callback failed" in caplog.text

    def test_stop_is_idempotent_and_frees_the_port(self):
        """Stopping twice is harmless and the port is closed afterwards."""
        server = EmbeddedSmtpServer()
        server.start()
        port = server.port
        server.stop()
        server.stop()
        assert not server.running
        with pytest.raises(ConnectionRefusedError):
            _send_mail(port)

    def test_clear_and_wait_for(self):
        """wait_for returns the messages once they are there; clear forgets them."""
        with EmbeddedSmtpServer() as server:
            _send_mail(server.port, to="a@example.org")
            _send_mail(server.port, to="b@example.org")
            assert len(server.wait_for(2, timeout_s=5)) == 2
            server.clear()
            assert server.messages == []


SITE_FILE = (
    freezer_site()
    + """\
alerting:
  contacts:
    - id: alice
      name: Alice Jansen
      channels:
%(channels)s
    - id: bob
      name: Bob
      channels: [{id: email, url: "mailto://127.0.0.1:25?to=bob@example.org&from=envmon@example.org"}]
  policies:
    - id: default
      steps: [{notify: {contact: alice}, wait: 5m}]
  routes:
    - {policy: default}
"""
)


def _site(channels: str) -> str:
    return SITE_FILE % {"channels": textwrap.indent(textwrap.dedent(channels).strip(), " " * 8)}


def _alice_channels(smtp: EmbeddedSmtpServer, webhook: WebhookServer) -> str:
    return f"""
    - id: email
      url: "mailto://envmon:${{SMTP_PASSWORD}}@127.0.0.1:{smtp.port}?to=alice@example.org&from=envmon@example.org"
    - id: hook
      url: "{webhook.url("/envmon")}"
    """


class TestSendTestPage:
    async def test_every_channel_gets_the_test_page(self, notifier, smtp, webhook):
        """Each channel of the contact gets a test page naming the site, the asker and the time."""
        site = parse_site(_site(_alice_channels(smtp, webhook)))
        assert site.alerting is not None
        results = await send_test_page(
            site.alerting,
            "alice",
            notifier=notifier,
            environ={"SMTP_PASSWORD": PASSWORD},
            site_name=site.name,
            now=T0,
            requested_by="qa@host",
        )
        assert [(channel, outcome.ok) for channel, outcome in results] == [
            ("email", True),
            ("hook", True),
        ]
        assert results[0][1].detail.startswith("SMTP 250")
        assert results[1][1] == Outcome(True, "HTTP 200")
        [mail] = smtp.messages
        assert mail.subject == "envmon test page — Test site"
        assert mail.recipients == ("alice@example.org",)
        assert mail.login == "envmon"
        assert "test page" in mail.body
        assert "qa@host" in mail.body
        assert "2026-12-07 02:00:00 UTC" in mail.body
        body = json.loads(webhook.requests[0].body)
        assert body["title"] == "envmon test page — Test site"
        assert "channel hook" in body["message"]

    async def test_missing_variable_fails_that_channel_only(self, notifier, smtp, webhook):
        """A channel whose variable is not set fails, naming it; the other channel still sends."""
        site = parse_site(_site(_alice_channels(smtp, webhook)))
        assert site.alerting is not None
        results = await send_test_page(
            site.alerting, "alice", notifier=notifier, environ={}, site_name="S", now=T0
        )
        email, hook = (outcome for _, outcome in results)
        assert not email.ok
        assert "SMTP_PASSWORD" in email.detail
        assert hook.ok
        assert smtp.messages == []

    async def test_unknown_contact(self):
        """An unknown contact is a KeyError."""
        site = parse_site(_site('- {id: hook, url: "json://127.0.0.1:9/x"}'))
        assert site.alerting is not None
        with pytest.raises(KeyError):
            await send_test_page(
                site.alerting,
                "nobody",
                notifier=CapturingNotifier(),
                environ={},
                site_name="S",
                now=T0,
            )


class TestRunTest:
    def _run(self, tmp_path, smtp, webhook, contact="alice"):
        path = tmp_path / "site.yaml"
        path.write_text(_site(_alice_channels(smtp, webhook)), encoding="utf-8")
        out = io.StringIO()
        console = Console(file=out, width=200, highlight=False, color_system=None)
        code = run_test(path, contact, console, environ={"SMTP_PASSWORD": PASSWORD})
        return code, out.getvalue()

    def test_all_channels_ok(self, tmp_path, smtp, webhook):
        """Every channel took the page: exit 0 and one ok line per channel with the reply."""
        code, output = self._run(tmp_path, smtp, webhook)
        assert code == 0
        lines = output.splitlines()
        assert "Alice Jansen (alice)" in lines[0]
        assert lines[1].split()[:4] == ["email", "ok", "SMTP", "250"]
        assert lines[2].split() == ["hook", "ok", "HTTP", "200"]
        assert PASSWORD not in output

    def test_a_failed_channel(self, tmp_path, smtp, webhook):
        """A channel that fails makes the exit code 1 and is shown with the server's answer."""
        smtp.fail_with(451)
        code, output = self._run(tmp_path, smtp, webhook)
        assert code == 1
        assert "email  failed  SMTP 451" in output
        assert "hook   ok      HTTP 200" in output

    def test_unknown_contact_names_the_known_ones(self, tmp_path, smtp, webhook):
        """An unknown contact exits 2 and names the contacts there are."""
        code, output = self._run(tmp_path, smtp, webhook, contact="carol")
        assert code == 2
        assert "unknown contact 'carol'" in output
        assert "alice, bob" in output
        assert smtp.messages == []
