"""paho-mqtt driven by the asyncio event loop: connect and subscribe are awaitables.

``MqttConnection`` is one connection to a broker. paho's socket callbacks register the
socket with the running loop (no network thread), so messages are handled on the loop and
acknowledgements are sent from it. paho objects stay inside this module: messages come out
as ``InboundMessage``, failures as ``collectors.mqtt.errors.MqttError``.

Three private paho methods are overridden (stable across paho 2.x, pinned ``<3``, and
covered by the tests against a real broker): ``_create_socket`` (buffered reads, coalesced
writes), ``_handle_publish`` (QoS 0/1 PUBLISH decoded straight into ``InboundMessage``,
MQTT 5 properties skipped) and ``_ssl_wrap_socket`` (closes the socket when the handshake
fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collectors.mqtt.errors import MqttConnectError, MqttConnectionLost, MqttSubscribeError
from collectors.mqtt.security import resolve_password, tls_context
from envmon.config.mqtt import MqttCollectorConfig

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

logger = logging.getLogger(__name__)

READ_CHUNK: Final = 65_536
#: Packets handled per readiness callback before yielding to other tasks.
MAX_PACKETS_PER_WAKEUP: Final = 2_000
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_REQUEST_TIMEOUT_S: Final = 10.0
_MISC_INTERVAL_S: Final = 1.0
_CLOSE_FLUSH_TIMEOUT_S: Final = 1.0
#: A PUBACK's fixed header (type 4, remaining length 2) above its 16-bit packet identifier.
_PUBACK: Final = 0x4002_0000


class InboundMessage(NamedTuple):
    """One PUBLISH received: what the collector needs of it, without paho."""

    topic: str | None  # None when the topic is not valid UTF-8 (``raw_topic`` has it)
    raw_topic: bytes
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool


class _BufferedSocket:
    """A socket wrapper paho reads from and writes to: buffered reads, coalesced writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        self.failed: OSError | None = None

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` bytes, refilling the buffer with one large read."""
        available = len(self._rbuf) - self._rpos
        if available <= 0:
            if self.failed is not None:
                raise self.failed
            data = self.sock.recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:
                return bytes(data)
            self._rbuf, self._rpos = data, 0
            available = len(data)
        start = self._rpos
        end = start + min(bufsize, available)
        self._rpos = end
        return self._rbuf[start:end]

    def next_publish(self) -> tuple[int, bytes] | None:
        """Take the next packet if it is a QoS 0/1 PUBLISH wholly in the buffer.

        Returns its fixed header byte and the rest of it; None when the next packet is of
        another kind or not complete yet (paho's own reader takes it then).
        """
        buf, start = self._rbuf, self._rpos
        end = len(buf)
        if end - start < 2:
            return None
        header = buf[start]
        if header & 0xF0 != 0x30 or header & 0x06 == 0x04:
            return None
        try:
            length, index = _variable_int(buf, start + 1, end)
        except (IndexError, ValueError):  # not all in the buffer yet, or paho's to refuse
            return None
        if end - index < length:
            return None
        self._rpos = index + length
        return header, buf[index : index + length]

    def pending(self) -> int:
        """Return how many bytes are readable without waiting for the socket."""
        extra = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return len(self._rbuf) - self._rpos + extra

    def send(self, data: bytes | bytearray) -> int:
        """Queue ``data``; ``flush`` writes it."""
        self._wbuf += data
        return len(data)

    @property
    def has_output(self) -> bool:
        """True while queued bytes are not yet written."""
        return bool(self._wbuf)

    def flush(self) -> bool:
        """Write what is queued; True when everything went out."""
        while self._wbuf:
            try:
                sent = self.sock.send(self._wbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return False
            except OSError as exc:
                self.failed = exc
                self._wbuf.clear()
                return True
            del self._wbuf[:sent]
        return True

    def fileno(self) -> int:
        """Return the socket's file descriptor."""
        return int(self.sock.fileno())

    def setblocking(self, flag: bool) -> None:
        """Pass through to the socket."""
        self.sock.setblocking(flag)

    def close(self) -> None:
        """Write what is still queued (a DISCONNECT, last acknowledgements), then close."""
        if self._wbuf and self.failed is None:
            with contextlib.suppress(OSError, ValueError):
                self.sock.settimeout(_CLOSE_FLUSH_TIMEOUT_S)
                self.sock.sendall(bytes(self._wbuf))
        self._wbuf.clear()
        self.sock.close()


def _variable_int(buf: bytes | bytearray, index: int, end: int) -> tuple[int, int]:
    """Return the MQTT variable byte integer at ``buf[index]`` and the index after it.

    ``IndexError`` if it runs to ``end``; ``ValueError`` if it is longer than four bytes.
    """
    value, multiplier = 0, 1
    for _ in range(4):
        if index >= end:
            raise IndexError("truncated variable byte integer")
        byte = buf[index]
        index += 1
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, index
        multiplier *= 128
    raise ValueError("variable byte integer longer than four bytes")


def decode_publish(header: int, packet: bytes | bytearray, v5: bool) -> InboundMessage:
    """Decode a PUBLISH packet (fixed header byte, rest of the packet); ``ValueError`` if bad."""
    qos = (header & 0x06) >> 1
    if qos > 2 or len(packet) < 2:
        raise ValueError("malformed PUBLISH")
    end = 2 + ((packet[0] << 8) | packet[1])
    raw_topic = bytes(packet[2:end])
    mid = 0
    if qos:
        if len(packet) < end + 2:
            raise ValueError("malformed PUBLISH: no packet identifier")
        mid = (packet[end] << 8) | packet[end + 1]
        end += 2
    if v5:  # skip the properties: a variable byte integer length, then that many bytes
        try:
            length, end = _variable_int(packet, end, len(packet))
        except IndexError:
            raise ValueError("malformed PUBLISH: truncated properties") from None
        except ValueError:
            raise ValueError("malformed PUBLISH: property length") from None
        end += length
    if end > len(packet):
        raise ValueError("malformed PUBLISH: truncated")
    try:
        topic: str | None = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        topic = None
    return InboundMessage(
        topic=topic,
        raw_topic=raw_topic,
        payload=bytes(packet[end:]),
        mid=mid,
        qos=qos,
        retain=bool(header & 0x01),
        dup=bool(header & 0x08),
    )


class _Client(paho.Client):
    """paho's client with the buffering socket and a direct PUBLISH decoder (see above)."""

    on_publish_received: Callable[[InboundMessage], None] | None = None

    def note_received(self) -> None:
        """Record traffic from the broker for the keep-alive (as paho's reader does)."""
        self._last_bytes_received = time.monotonic()

    def _create_socket(self) -> SocketLike:
        raw = super()._create_socket()
        if not isinstance(raw, socket.socket):  # websockets: not used by envmon
            return raw
        return _BufferedSocket(raw)

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        # paho leaves the TLS socket open when the handshake fails (a refused or untrusted
        # certificate): close it. Host names are checked by the context (check_hostname).
        context = self._ssl_context
        assert context is not None
        ssl_sock = context.wrap_socket(
            tcp_sock, server_hostname=self._host, do_handshake_on_connect=False
        )
        try:
            ssl_sock.settimeout(self._connect_timeout)
            ssl_sock.do_handshake()
        except BaseException:
            ssl_sock.close()
            raise
        return ssl_sock

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_publish_received
        header = self._in_packet["command"]
        if handler is None or (header & 0x06) >> 1 == 2:  # QoS 2 is never subscribed to
            return super()._handle_publish()
        try:
            message = decode_publish(
                header, self._in_packet["packet"], self._protocol == MQTTProtocolVersion.MQTTv5
            )
        except (ValueError, struct.error):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        handler(message)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class MqttConnection:
    """One connection to a broker, driven by the running asyncio loop.

    Call ``connect``, then ``subscribe``; ``on_message`` is called on the loop for every
    PUBLISH; ``ack`` acknowledges one (the client never acknowledges by itself). ``lost``
    completes when the connection ends, for any reason.
    """

    def __init__(
        self,
        config: MqttCollectorConfig,
        on_message: Callable[[InboundMessage], None],
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self.config = config
        self._on_message_cb = on_message
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._v5 = config.protocol == "5"
        self._client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.effective_client_id,
            clean_session=None if self._v5 else config.clean_start,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        self._client.suppress_exceptions = True
        self._client.connect_timeout = connect_timeout
        if config.username is not None:
            self._client.username_pw_set(config.username, resolve_password(config))
        context = tls_context(config)
        if context is not None:
            self._client.tls_set_context(context)
            self._client.tls_insecure_set(config.tls is not None and config.tls.insecure)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_request_ack
        self._client.on_unsubscribe = self._on_request_ack
        self._client.on_message = self._on_message
        self._client.on_publish_received = on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_register_write
        self._client.on_socket_unregister_write = self._on_unregister_write
        self._sock: _BufferedSocket | None = None
        self._paho_wants_write = False
        self._writer_registered = False
        self._reading = False
        self._misc_task: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[bool] = self._loop.create_future()
        self._requests: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self.lost: asyncio.Future[str] = self._loop.create_future()
        self.session_present = False

    # ------------------------------------------------------------------ public API

    async def connect(self) -> bool:
        """Connect and wait for the CONNACK; return whether the broker had our session."""
        config = self.config
        properties: Properties | None = None
        clean_start: bool | Literal[3] = paho.MQTT_CLEAN_START_FIRST_ONLY
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = int(config.session_expiry)
            properties.ReceiveMaximum = config.receive_maximum
            clean_start = config.clean_start
        connect = partial(
            self._client.connect,
            config.host,
            config.effective_port,
            keepalive=max(1, round(config.keepalive)),
            clean_start=clean_start,
            properties=properties,
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._loop.run_in_executor(None, connect)
                self.session_present = await asyncio.shield(self._connack)
        except TimeoutError:
            self.close()
            raise MqttConnectError(
                f"no CONNACK from {config.host}:{config.effective_port} within "
                f"{self._connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.close()
            raise MqttConnectError(
                f"cannot connect to {config.host}:{config.effective_port}: {exc}"
            ) from exc
        except MqttConnectError:
            self.close()
            raise
        return self.session_present

    async def subscribe(self, filters: Sequence[str], qos: int) -> None:
        """Subscribe to ``filters`` at ``qos`` in one request; raise if any is refused."""
        if not filters:
            return
        if self._v5:
            options = SubscribeOptions(qos=qos)
            result, mid = self._client.subscribe([(f, options) for f in filters])
        else:
            result, mid = self._client.subscribe([(f, qos) for f in filters])
        self._check_rc(result, "SUBSCRIBE")
        assert mid is not None  # paho gives a message id whenever the result is success
        codes = await self._wait_request(mid, "SUBACK")
        refused = [f"{f} ({c})" for f, c in zip(filters, codes, strict=False) if c.is_failure]
        if refused:
            raise MqttSubscribeError("subscription refused: " + ", ".join(refused))

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Unsubscribe from ``filters``."""
        result, mid = self._client.unsubscribe(list(filters))
        self._check_rc(result, "UNSUBSCRIBE")
        assert mid is not None
        await self._wait_request(mid, "UNSUBACK")

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a QoS 1 message (nothing to do for QoS 0)."""
        if qos:
            self._client.ack(mid, qos)

    def ack_many(self, acks: Sequence[tuple[int, int]]) -> None:
        """Acknowledge a group of messages in order and write the acknowledgements at once.

        QoS 1 PUBACKs (4 bytes: success, no reason code or properties, valid in 3.1.1 and
        5) are packed here into one write rather than queued by paho one packet at a time.
        """
        sock = self._sock
        if sock is None:
            return
        if any(qos == 2 for _, qos in acks):  # never subscribed to: paho's handshake
            for mid, qos in acks:
                self.ack(mid, qos)
        else:
            mids = [mid for mid, qos in acks if qos == 1]
            if mids:
                sock.send(struct.pack(f">{len(mids)}I", *(_PUBACK | mid for mid in mids)))
        self.flush()

    def pause_reading(self) -> None:
        """Stop reading from the socket (the broker waits; TCP holds what is in flight)."""
        sock = self._sock
        if sock is not None and self._reading:
            self._loop.remove_reader(sock)
            self._reading = False

    def resume_reading(self) -> None:
        """Read from the socket again."""
        sock = self._sock
        if sock is not None and not self._reading and not self.lost.done():
            self._loop.add_reader(sock, self._on_readable)
            self._reading = True
            if sock.pending():
                self._loop.call_soon(self._on_readable)

    @property
    def connected(self) -> bool:
        """True while the connection is up."""
        return self._client.is_connected() and not self.lost.done()

    async def disconnect(self) -> None:
        """Send DISCONNECT (after everything queued before it) and close.

        The session is kept: the broker holds our subscriptions and queues messages.
        """
        if self._sock is not None and not self.lost.done():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._request_timeout):
                    await asyncio.shield(self.lost)
        self.close()

    def close(self) -> None:
        """Close the socket at once (no DISCONNECT: the broker sees a lost connection)."""
        sock = self._sock
        if sock is not None:
            self._unwatch(sock)
            self._sock = None
            with contextlib.suppress(OSError):
                sock.close()
        self._set_lost("closed")
        if self._misc_task is not None:
            self._misc_task.cancel()
            self._misc_task = None

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(MqttConnectError(f"the broker refused: {reason}"))
        else:
            self._connack.set_result(bool(flags.session_present))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        text = str(reason)
        if not self._connack.done():
            self._connack.set_exception(MqttConnectError(f"disconnected before CONNACK: {text}"))
        self._set_lost(text)

    def _on_request_ack(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """Resolve the acknowledged SUBSCRIBE's or UNSUBSCRIBE's future with its reason codes."""
        future = self._requests.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(list(reasons))

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        raw_topic: bytes = message._topic  # the only way to the undecoded topic
        try:
            topic: str | None = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            topic = None
        payload = message.payload
        self._on_message_cb(
            InboundMessage(
                topic=topic,
                raw_topic=raw_topic,
                payload=payload if isinstance(payload, bytes) else bytes(payload),
                mid=message.mid,
                qos=message.qos,
                retain=bool(message.retain),
                dup=bool(message.dup),
            )
        )

    # ------------------------------------------------------------------ socket plumbing

    def _in_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop (paho calls from the executor while connecting)."""
        if threading.get_ident() == self._loop_thread:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)

    def _on_socket_open(self, client: paho.Client, userdata: object, sock: SocketLike) -> None:
        self._in_loop(partial(self._watch, cast(_BufferedSocket, sock)))

    def _on_socket_close(self, client: paho.Client, userdata: object, sock: SocketLike) -> None:
        self._in_loop(partial(self._unwatch, cast(_BufferedSocket, sock)))

    def _on_register_write(self, client: paho.Client, userdata: object, sock: SocketLike) -> None:
        self._paho_wants_write = True
        self._in_loop(self._update_writer)

    def _on_unregister_write(self, client: paho.Client, userdata: object, sock: SocketLike) -> None:
        self._paho_wants_write = False
        self._in_loop(self._update_writer)

    def _watch(self, sock: _BufferedSocket) -> None:
        if self.lost.done():  # closed while the executor was still connecting
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._sock = sock
        self._loop.add_reader(sock, self._on_readable)
        self._reading = True
        self._update_writer()
        if self._misc_task is None:
            self._misc_task = self._loop.create_task(self._misc())

    def _unwatch(self, sock: _BufferedSocket) -> None:
        self._reading = False
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)
        self._writer_registered = False

    def _update_writer(self) -> None:
        sock = self._sock
        if sock is None:
            return
        want = self._paho_wants_write or sock.has_output
        if want and not self._writer_registered:
            self._loop.add_writer(sock, self._on_writable)
            self._writer_registered = True
        elif not want and self._writer_registered:
            self._loop.remove_writer(sock)
            self._writer_registered = False

    def _on_readable(self) -> None:
        client = self._client
        if not self._reading:
            return
        handler, v5, received = self._on_message_cb, self._v5, False
        for _ in range(MAX_PACKETS_PER_WAKEUP):
            sock = self._sock
            if sock is None:
                return
            frame = sock.next_publish()
            if frame is not None:  # the fast path: a whole PUBLISH is in the buffer
                received = True
                try:
                    message = decode_publish(frame[0], frame[1], v5)
                except ValueError as exc:
                    logger.error("%s: %s; dropping the connection", self.config.id, exc)
                    self.close()
                    return
                handler(message)
                if not self._reading:
                    break
                continue
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                return
            if not self._reading or not sock.pending():
                break
        else:
            # Data is still buffered in user space: the selector would not wake us for it.
            self._loop.call_soon(self._on_readable)
        if received:
            client.note_received()
        self.flush()

    def _on_writable(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what paho queued (acknowledgements) now rather than on the next iteration."""
        sock = self._sock
        if sock is None:
            return
        if self._paho_wants_write:
            self._client.loop_write()
            sock = self._sock
            if sock is None:
                return
        sock.flush()
        if sock.failed is not None:
            # Let paho see the failure on its next read and report the lost connection.
            self._loop.call_soon(self._on_readable)
        self._update_writer()

    async def _misc(self) -> None:
        """Keep-alive pings and ping timeouts (paho's loop_misc), once a second."""
        while True:
            await asyncio.sleep(_MISC_INTERVAL_S)
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._set_lost("connection lost (keep-alive)")
                return
            self.flush()

    # ------------------------------------------------------------------ helpers

    def _set_lost(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        for future in self._requests.values():
            if not future.done():
                future.set_exception(MqttConnectionLost(reason))
        self._requests.clear()

    def _check_rc(self, result: MQTTErrorCode, what: str) -> None:
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttConnectionLost(f"cannot send {what}: {paho.error_string(result)}")

    async def _wait_request(self, mid: int, what: str) -> list[ReasonCode]:
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._requests[mid] = future
        self.flush()
        try:
            async with asyncio.timeout(self._request_timeout):
                return await future
        except TimeoutError:
            self._requests.pop(mid, None)
            raise MqttConnectionLost(f"no {what} within {self._request_timeout:g} s") from None
