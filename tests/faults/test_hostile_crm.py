"""The hostile CRM misbehaves exactly as its modes say, records every request, and stops
promptly even while a drip or a slow answer is under way. Checked with plain sockets and
``http.client``, nothing of leadrelay's, so the fault tests stand on a known CRM."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from .hostile_crm import NUL_BODY, HostileCrm

ROOT = Path(__file__).parents[2]


def post(crm: HostileCrm, path: str, body: bytes = b"first_name=Jane",
         headers: dict[str, str] | None = None,
         timeout: float = 5) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", crm.port, timeout=timeout)
    conn.request("POST", path, body, headers or {})
    return conn.getresponse()


def test_ok_answers_json_and_records_the_request_with_its_idempotency_key(
    hostile_crm: HostileCrm,
) -> None:
    # When a lead is posted twice with the same key
    for _ in range(2):
        answer = post(hostile_crm, "/leads", headers={"Idempotency-Key": "k-1"})
        assert answer.status == 200
        assert json.loads(answer.read())["ok"] is True

    # Then both are recorded, body and key included
    assert hostile_crm.count() == 2
    assert hostile_crm.idempotency_keys() == ["k-1", "k-1"]
    assert hostile_crm.received[0].body == b"first_name=Jane"
    assert hostile_crm.received[0].mode == "ok"


def test_drip_sends_the_head_at_once_then_one_byte_per_interval(
    hostile_crm: HostileCrm,
) -> None:
    started = time.monotonic()
    answer = post(hostile_crm, "/drip/leads?interval_ms=50&bytes=6")
    head_after = time.monotonic() - started
    body = answer.read()
    total = time.monotonic() - started

    assert answer.status == 200 and body == b"xxxxxx"
    assert head_after < 0.2
    assert 0.3 - 0.05 <= total < 2.0  # 6 bytes x 50 ms


def test_drip_head_trickles_the_head_without_ever_ending_it(hostile_crm: HostileCrm) -> None:
    sock = socket.create_connection(("127.0.0.1", hostile_crm.port), timeout=5)
    sock.sendall(b"POST /drip_head/x?interval_ms=20&bytes=1000 HTTP/1.1\r\n"
                 b"Host: x\r\nContent-Length: 0\r\n\r\n")
    received = b""
    reads = 0
    stop_at = time.monotonic() + 0.5
    with sock:
        while time.monotonic() < stop_at:
            received += sock.recv(100)
            reads += 1

    # A byte every 20 ms: each read returns soon (a per-read timeout never trips),
    # and half a second later the head is still not complete.
    assert received.startswith(b"HTTP/1.1 200 OK\r\nX-Drip: x")
    assert b"\r\n\r\n" not in received
    assert reads > 5


def test_the_gzip_bomb_is_small_on_the_wire_and_large_inflated(hostile_crm: HostileCrm) -> None:
    answer = post(hostile_crm, "/gzip_bomb/leads")
    raw = answer.read()

    assert answer.getheader("Content-Encoding") == "gzip"
    assert len(raw) < 64 * 1024
    assert len(gzip.decompress(raw)) == 10 * 1024 * 1024


def test_nul_sends_nul_bytes_and_invalid_utf8(hostile_crm: HostileCrm) -> None:
    answer = post(hostile_crm, "/nul/leads")
    body = answer.read()

    assert body == NUL_BODY and b"\x00" in body
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert "\x00" in (answer.getheader("X-Note") or "")


def test_reset_closes_with_rst_after_reading_the_request(hostile_crm: HostileCrm) -> None:
    with pytest.raises(ConnectionResetError):
        post(hostile_crm, "/reset/leads")

    assert hostile_crm.count("/reset") == 1  # the request did arrive


def test_short_body_announces_more_than_it_sends(hostile_crm: HostileCrm) -> None:
    answer = post(hostile_crm, "/short_body/leads")

    with pytest.raises(http.client.IncompleteRead):
        answer.read()


def test_slow_answers_after_its_delay(hostile_crm: HostileCrm) -> None:
    started = time.monotonic()
    answer = post(hostile_crm, "/slow/leads?seconds=0.3")

    assert answer.status == 200
    assert 0.3 <= time.monotonic() - started < 2.0


def test_huge_sends_its_whole_length(hostile_crm: HostileCrm) -> None:
    answer = post(hostile_crm, "/huge/leads?huge_bytes=3000000")

    assert len(answer.read()) == 3_000_000


def test_the_instance_mode_applies_to_every_path_but_a_named_one() -> None:
    with HostileCrm("short_body") as crm:
        with pytest.raises(http.client.IncompleteRead):
            post(crm, "/leads").read()
        assert post(crm, "/ok/leads").status == 200
        crm.set_mode("ok")
        assert post(crm, "/leads").status == 200


def test_stop_ends_a_drip_and_a_slow_answer_under_way_promptly() -> None:
    before = threading.active_count()
    crm = HostileCrm("drip", interval=1.0).start()
    clients = []
    for path in ("/drip/a", "/slow/b?seconds=60", "/ok/c"):
        sock = socket.create_connection(("127.0.0.1", crm.port), timeout=5)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        clients.append(sock)
    deadline = time.monotonic() + 5
    while crm.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    crm.stop()

    assert time.monotonic() - started < 3
    assert threading.active_count() == before  # every handler thread joined
    for sock in clients:
        sock.close()


def test_standalone_prints_its_url_and_reports_what_it_received() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.hostile_crm", "--port", "0", "--mode", "ok",
         "--max-seconds", "30"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(url + "/leads", data=b"x=1",
                                         headers={"Idempotency-Key": "abc"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        switch = urllib.request.Request(url + "/_mode?mode=short_body", method="PUT")
        with urllib.request.urlopen(switch, timeout=5) as answer:
            assert answer.status == 204
        with urllib.request.urlopen(url + "/_received", timeout=5) as answer:
            received = json.loads(answer.read())
        assert [(r["path"], r["idempotency_key"], r["body"]) for r in received] == [
            ("/leads", "abc", "x=1")]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
