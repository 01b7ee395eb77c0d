"""Clients that record every request they make, with its time, for the soak: POSTs with bodies
on keep-alive connections, and WebSocket sessions against the demo API's echo (`GET /ws`).

wrk carries the bulk of the soak's traffic but only counts failures; these clients exist because
two kinds of request may fail *by design* when an instance dies under them (docs/config.md,
`[upstream.NAME.retry]`): a POST is never sent twice, and a WebSocket is a live connection to
one instance. Judging those failures needs to know when each one happened and, for a
WebSocket, which instance it was on (`X-Instance` on the `101`).

Each client runs in a thread until `stop` is set, pacing itself with a fixed pause between
requests (steady traffic, not a readiness wait).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Outcome:
    """One failed request or session (successes are only counted)."""
    kind: str  # "post" | "ws-handshake" | "ws-session"
    start: float  # seconds since the soak began
    end: float
    error: str
    instance: str | None = None  # WebSocket: the instance the session was on


@dataclass
class Tally:
    ok: int = 0
    failures: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def success(self, n: int = 1):
        with self.lock:
            self.ok += n

    def failure(self, outcome: Outcome):
        with self.lock:
            self.failures.append(outcome)


class PostClient(threading.Thread):
    """POST /echo with a `body_bytes` body on one keep-alive connection (a new one after any
    failure); the echoed body must come back byte for byte."""

    def __init__(self, host: str, port: int, clock, stop: threading.Event, tally: Tally,
                 pause_s: float, body_bytes: int = 4096, number: int = 0):
        super().__init__(daemon=True, name=f"post-{number}")
        self.host, self.port, self.clock, self.stop, self.tally = host, port, clock, stop, tally
        self.pause_s = pause_s
        self.body = bytes((number + i) % 251 for i in range(body_bytes))

    def run(self):
        conn = None
        while not self.stop.is_set():
            start = self.clock()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("POST", "/echo", body=self.body,
                             headers={"Content-Type": "application/octet-stream"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {body[:120]!r}")
                if body != self.body:
                    raise RuntimeError(f"echo mismatch: {len(body)} bytes back of {len(self.body)}")
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                self.tally.success()
            except Exception as error:  # noqa: BLE001 - every failure is recorded, then judged
                self.tally.failure(Outcome("post", start, self.clock(), str(error) or repr(error)))
                if conn is not None:
                    conn.close()
                conn = None
            self.stop.wait(self.pause_s)
        if conn is not None:
            conn.close()


class WebSocket:
    """A minimal RFC 6455 client: handshake, masked frames out, unmasked frames in."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head[:200]!r}")
            head += chunk
        head, self.buffered = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise ConnectionError(f"handshake answered {lines[0]!r}")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        expected = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("wrong Sec-WebSocket-Accept")
        self.instance = headers.get("x-instance")

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buffered) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffered += chunk
        out, self.buffered = self.buffered[:n], self.buffered[n:]
        return out

    def send(self, opcode: int, payload: bytes):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        first, second = self._recv_exact(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._recv_exact(8))[0]
        return first & 0x0F, self._recv_exact(n)

    def close(self):
        try:
            self.send(0x8, struct.pack("!H", 1000))
            opcode, _ = self.recv()
            if opcode != 0x8:
                raise ConnectionError(f"expected a close frame, got opcode {opcode}")
        finally:
            self.sock.close()


class WebSocketClient(threading.Thread):
    """One WebSocket session at a time: a text message every `pause_s`, whose echo must come
    back unchanged; a lost session is recorded with its instance and replaced at once."""

    def __init__(self, host: str, port: int, clock, stop: threading.Event, tally: Tally,
                 pause_s: float, number: int = 0):
        super().__init__(daemon=True, name=f"ws-{number}")
        self.host, self.port, self.clock, self.stop, self.tally = host, port, clock, stop, tally
        self.pause_s = pause_s
        self.number = number
        self.sessions = 0
        self.clean_closes = 0

    def run(self):
        sequence = 0
        while not self.stop.is_set():
            start = self.clock()
            try:
                ws = WebSocket(self.host, self.port)
            except Exception as error:  # noqa: BLE001
                self.tally.failure(Outcome("ws-handshake", start, self.clock(), str(error) or repr(error)))
                self.stop.wait(self.pause_s)
                continue
            self.sessions += 1
            sent_at = self.clock()
            try:
                while not self.stop.is_set():
                    sequence += 1
                    message = f"client {self.number} message {sequence} ".encode() * 4
                    sent_at = self.clock()
                    ws.send(0x1, message)
                    opcode, echoed = ws.recv()
                    if opcode != 0x1 or echoed != message:
                        raise RuntimeError(f"echo mismatch (opcode {opcode}, {len(echoed)} bytes)")
                    self.tally.success()
                    self.stop.wait(self.pause_s)
                ws.close()
                self.clean_closes += 1
            except Exception as error:  # noqa: BLE001
                self.tally.failure(Outcome("ws-session", sent_at, self.clock(),
                                           str(error) or repr(error), ws.instance))
                ws.sock.close()
