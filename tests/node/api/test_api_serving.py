"""How `serve` runs the API (issue 14): `--workers 2` share one API port (their metrics
summed), HTTPS with the node's certificate when `api_tls` is set (a renewed one served
without a restart), SIGTERM stops every process and frees the port, and `api_listen = ""`
turns the API off."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from node.setup import pki
from tests.conftest import wait_until
from tests.federation import port_is_free
from tests.node.api.api_client import Api, add_user, api_address
from tests.node.rpc.peer_wire import federation

REQUESTS = 30


def test_workers_share_one_https_port_and_stop_cleanly() -> None:
    with federation("api-workers") as fed:
        node = fed.add_node("customs-nl")
        fed.configure("customs-nl", api_tls=True)
        token = add_user(fed, "customs-nl", "Ana Lyst", "analyst")
        fed.start("customs-nl", "--workers", "2")
        base = api_address(fed, "customs-nl", servers=2)
        lines = [
            line for line in fed.log("customs-nl").read_text().splitlines() if " api on " in line
        ]
        assert len({line.split(" api on ")[1].split()[0] for line in lines}) == 1, lines
        assert len({line.split("(pid ")[1] for line in lines}) == 2, lines  # two processes
        assert base.startswith("https://127.0.0.1:")
        tls = ssl.create_default_context(cafile=str(node / "tls" / "ca.crt"))
        api = Api(base, token, verify=tls)
        for _ in range(REQUESTS):
            assert api.get("/v1/lists").status_code == 200
        text = api.get("/metrics").text
        [count] = [
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "blindmatch_api_requests_total" and s.labels.get("route") == "/v1/lists"
        ]
        assert count == REQUESTS  # both processes' counters, summed
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not spoken there
            httpx.get(base.replace("https", "http") + "/v1/lists", timeout=5).raise_for_status()

        assert fed.stop("customs-nl") == 0
        assert port_is_free(base.removeprefix("https://"))
        assert not [p for p in (node / "metrics").iterdir()]  # this serve's metrics removed


def served_serial(base: str, ca_file: str) -> int:
    """The serial of the certificate the API at `base` presents to a new connection."""
    host, port = base.removeprefix("https://").rsplit(":", 1)
    tls = ssl.create_default_context(cafile=ca_file)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        tls.wrap_socket(raw, server_hostname=host) as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_certificate_is_served_by_the_api_without_a_restart() -> None:
    with federation("api-renewal") as fed:
        node = fed.add_node("customs-nl")
        fed.configure("customs-nl", api_tls=True)
        pid = fed.start("customs-nl").pid
        base = api_address(fed, "customs-nl")
        ca_file = str(node / "tls" / "ca.crt")
        old = served_serial(base, ca_file)
        assert old == pki.certificate_info(node / "tls" / "node.crt").serial

        request, certificate = fed.root / "renewal.csr", fed.root / "renewal.crt"
        listen = fed.addresses["customs-nl"]
        fed.cli("init", node, "--agency", "customs-nl", "--listen", listen, "--csr-out", request)
        fed.cli("ca", "sign", fed.root / "ca", request, "--out", certificate)
        fed.cli("cert", "install", node, certificate, "--ca-cert", fed.root / "ca" / "ca.crt")
        new = pki.certificate_info(node / "tls" / "node.crt").serial
        assert new != old
        assert wait_until(lambda: served_serial(base, ca_file) == new, 30.0, interval=0.2)
        assert fed.servers["customs-nl"].pid == pid and fed.servers["customs-nl"].poll() is None


def test_api_listen_empty_turns_the_api_off() -> None:
    with federation("api-off") as fed:
        fed.add_node("customs-nl")
        fed.configure("customs-nl", api_listen="")
        fed.start("customs-nl")
        assert fed.stop("customs-nl") == 0
        assert " api on " not in fed.log("customs-nl").read_text()


def test_an_api_port_in_use_stops_serve_before_it_serves() -> None:
    with federation("api-busy") as fed, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = fed.add_node("customs-nl")
        fed.configure("customs-nl", api_listen=f"127.0.0.1:{port}")
        proc = fed.cli("serve", node, check=False, timeout=60)
        assert proc.returncode == 1
        assert f"the local API cannot listen on 127.0.0.1:{port}" in proc.stderr
        assert "serving on" not in proc.stdout
