"""Per-delivery overhead of the ``webservice_soap`` connector over a raw, hand-written zeep call.

Both sides call Salesforce Partner ``create`` (one Lead, four fields, a
``SessionHeader``) on the same local SOAP server, with a zeep ``Client``
built once and a session logged in once:

* **raw**: ``service.create(sObjects=[...], _soapheaders=...)`` on a cached
  client, as a developer would write it by hand;
* **connector**: ``SoapConnector.send`` through the engine's ``Transport``
  (recorded, redacted exchange) and then ``judge`` (expectations, CRM reference).

The server runs in its own process (a minimal asyncio HTTP/1.1 responder,
keep-alive, Nagle off) so it neither shares the GIL with the code measured nor
hides it behind its own cost. Both wall time and client CPU time are reported. Run from the
repository root::

    .venv/bin/python bench/soap_overhead.py [--calls 2000] [--rounds 5]

Standalone on purpose: the benchmark harness may import it later.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WSDL = ROOT / "tests" / "fixtures" / "wsdl" / "salesforce" / "partner_v58.wsdl"
SUCCESS = ROOT / "tests" / "fixtures" / "soap-responses" / "sf_partner_create_success.xml"
LOGIN_PATH = "/services/Soap/u/58.0"
INSTANCE_PATH = "/services/Soap/u/58.0/00Dxx0000001gEF"
SOBJECT_NS = "urn:sobject.partner.soap.sforce.com"
LEAD = {"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@example.com",
        "Company": "ACME Corp"}

# Shaped from the WSDL's LoginResult (no verbatim login answer in the fixtures).
LOGIN_RESPONSE = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>
<metadataServerUrl>{base}/m</metadataServerUrl><passwordExpired>false</passwordExpired>
<sandbox>false</sandbox><serverUrl>{base}{instance}</serverUrl>
<sessionId>00Dxx!bench-session</sessionId><userId>005xx000001SvH6AAK</userId>
</result></loginResponse></soapenv:Body></soapenv:Envelope>"""


def _serve(ports: Any) -> None:
    """The CRM: serves the WSDL, answers login and create. Runs in a child process.

    A minimal asyncio HTTP/1.1 responder with keep-alive: a CRM stub must cost
    far less than the client code measured, or it hides the difference.
    """
    import asyncio
    import socket

    wsdl = WSDL.read_bytes()
    success = SUCCESS.read_bytes()

    def answer(base: str, method: str, path: str, body: bytes) -> bytes:
        if method == "GET":
            return wsdl.replace(b"https://login.salesforce.com/services/Soap/u/58.0",
                                (base + LOGIN_PATH).encode())
        if path == LOGIN_PATH:
            return LOGIN_RESPONSE.format(base=base, instance=INSTANCE_PATH).encode()
        if path == INSTANCE_PATH and b"bench-session" in body:
            return success
        return b""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                out = answer(base, method, target.split("?")[0], body)
                status = b"200 OK" if out else b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/xml; charset=utf-8"
                             b"\r\nContent-Length: " + str(len(out)).encode() + b"\r\n\r\n"
                             + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(run())


def raw_caller(base: str) -> Any:
    """A hand-written zeep call with a cached client and session."""
    import requests
    import zeep
    from lxml import etree

    session = requests.Session()
    session.trust_env = False
    client = zeep.Client(base + "/partner.wsdl", transport=zeep.Transport(session=session))
    login = client.service.login(username="api@acme.example", password="pw")
    service = client.create_service("{urn:partner.soap.sforce.com}SoapBinding", login.serverUrl)
    sobject = client.get_type(f"{{{SOBJECT_NS}}}sObject")
    headers = {"SessionHeader": {"sessionId": login.sessionId}}

    def call() -> str:
        fields = []
        for name, value in LEAD.items():
            el = etree.Element(f"{{{SOBJECT_NS}}}{name}")
            el.text = value
            fields.append(el)
        answer = service.create(sObjects=[sobject(type="Lead", _value_1=fields)],
                                _soapheaders=headers)
        # create's output declares SOAP headers, so zeep returns header + body.
        saved = answer.body.result[0]
        if not saved.success:
            raise RuntimeError("create failed")
        return str(saved.id)

    return call


def connector_caller(base: str) -> Any:
    """The connector as the engine's delivery runner drives it."""
    import leadrelay.connectors.webservice_soap as soap
    from leadrelay.engine.connector import LeadEnvelope
    from leadrelay.engine.egress import EgressPolicy
    from leadrelay.engine.expectations import Expectations
    from leadrelay.engine.outcome import Outcome
    from leadrelay.engine.plugins import Plugins
    from leadrelay.engine.secrets import Redactor, secret_values
    from leadrelay.engine.transport import Transport

    plugins = Plugins(load_entry_points=False, extra_plugins=[soap])
    connector = plugins.build("webservice_soap", {
        "preset": "salesforce_partner", "wsdl": base + "/partner.wsdl",
        "username": "api@acme.example", "password": "pw",
        "fields": {"FirstName": "first_name", "LastName": "last_name", "Email": "email",
                   "Company": "company"}})
    transport = Transport(egress=EgressPolicy(["127.0.0.1"]))  # the bench CRM: loopback
    redactor = Redactor(secret_values(connector.config))
    expectations = Expectations.parse(None, plugins.expectation_kinds,
                                      default=type(connector).default_expectations)
    lead = LeadEnvelope(
        fields={"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com",
                "company": "ACME Corp"},
        lead_id=1, delivery_id=1, idempotency_key="k", form_id=1, source="form",
        received_at=datetime.now(UTC))

    def call() -> str:
        http = transport.client(redactor)
        verdict = connector.judge(connector.send(lead, http), expectations)
        if verdict.outcome is not Outcome.ACCEPTED:
            raise RuntimeError(verdict.reason)
        return str(verdict.crm_reference)

    return call


def per_call(call: Any, n: int) -> tuple[float, float]:
    """Wall and CPU seconds per call over ``n`` calls."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n, (time.process_time() - cpu) / n


def main() -> None:
    """Measure and print medians per call and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and side")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    args = parser.parse_args()

    ports: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{ports.get(timeout=10)}"
    try:
        raw, conn = raw_caller(base), connector_caller(base)
        assert raw() == conn() == "001R0000029IyDPIA0"
        per_call(raw, 200)  # warm both: connections, caches, code paths
        per_call(conn, 200)
        raw_times, conn_times = [], []
        for _ in range(args.rounds):  # alternate so drift hits both sides alike
            raw_times.append(per_call(raw, args.calls))
            conn_times.append(per_call(conn, args.calls))
    finally:
        server.terminate()
        server.join(5)
    r = statistics.median(t[0] for t in raw_times)
    c = statistics.median(t[0] for t in conn_times)
    rc = statistics.median(t[1] for t in raw_times)
    cc = statistics.median(t[1] for t in conn_times)
    print(f"raw zeep call (cached client): {r * 1e6:6.0f} µs/call wall ({1 / r:5.0f}/s), "
          f"{rc * 1e6:6.0f} µs CPU")
    print(f"connector send + judge:        {c * 1e6:6.0f} µs/call wall ({1 / c:5.0f}/s), "
          f"{cc * 1e6:6.0f} µs CPU")
    print(f"ratio connector / raw:         {c / r:6.2f}x wall, {cc / rc:.2f}x CPU "
          "(target <= 1.5x)")


if __name__ == "__main__":
    main()
