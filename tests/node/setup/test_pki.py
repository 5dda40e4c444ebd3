"""Tests for node.setup.pki: CA, requests, signing, installation, revocation, CRLs, key modes."""

import datetime as dt
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.data import audit
from node.errors import ConfigError, NotFound
from node.setup import pki
from node.setup.config import NodeConfig

AGENCY = pki.AGENCY_URI_PREFIX


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca(ca: Path) -> None:
    cert = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert _mode(ca / "ca.key") == 0o600
    with pytest.raises(ConfigError, match="already holds a CA"):
        pki.init_ca(ca)


def test_node_certificate(node: NodeConfig, ca: Path) -> None:
    pem = node.tls_cert.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "customs-nl"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "blindmatch://agency/customs-nl" in san.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    assert node.ca_cert.read_bytes() == (ca / "ca.crt").read_bytes()
    assert pki.agency_from_certificate(pem) == "customs-nl"
    der = cert.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER)
    assert pki.agency_from_certificate(der) == "customs-nl"


def test_key_modes_and_audit_key(node: NodeConfig) -> None:
    assert _mode(node.tls_key) == 0o600
    assert _mode(node.audit_key) == 0o600
    audit.load_signing_key(node.audit_key)  # refuses group/world-readable keys
    assert (node.node_dir / "audit.pub").exists()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        pki.generate_audit_key(node.node_dir)


def test_bad_agency_and_garbage_certificate(ca: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="agency id"):
        pki.issue_node_certificate(ca, tmp_path, "Bad Agency")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        pki.agency_from_certificate(b"not a certificate")


# -- requests, signing, installation ------------------------------------------------------------

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # certificates keep whole seconds


def _request(node_dir: Path, agency: str = "customs-nl", hosts: tuple[str, ...] = ()) -> bytes:
    return pki.make_request(node_dir, agency, hosts)


def _csr(
    common_name: str, names: list[x509.GeneralName], key: ec.EllipticCurvePrivateKey | None = None
) -> bytes:
    """A request made by hand, as a careless or hostile requester might make it."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _flip_last_byte(pem_or_der: bytes, loader: Any) -> bytes:
    """DER of a signed object with its signature's last byte changed (still parseable)."""
    der = bytearray(loader(pem_or_der).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return bytes(der)


def test_request_names_the_agency_and_safe_hosts_and_keeps_its_key_pending(
    tmp_path: Path,
) -> None:
    node = tmp_path / "node"
    pem = _request(node, hosts=("127.0.0.1", "node1", "node1.customs.example", "[::1]"))
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "customs-nl"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "blindmatch://agency/customs-nl"
    ]
    # A bare host name could be another agency's id: left out.
    assert san.get_values_for_type(x509.DNSName) == ["customs-nl", "node1.customs.example"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    pending = node / "tls" / "pending.key"
    assert _mode(pending) == 0o600
    key = serialization.load_pem_private_key(pending.read_bytes(), password=None)
    assert _spki(key.public_key()) == _spki(csr.public_key())
    with pytest.raises(ConfigError, match="earlier request"):
        _request(node)
    assert serialization.load_pem_private_key(pending.read_bytes(), None).public_key() == (
        key.public_key()
    )  # never overwritten


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def test_sign_issues_what_the_request_asks_and_indexes_it(ca: Path, tmp_path: Path) -> None:
    request = _request(tmp_path / "node", hosts=("10.0.0.7", "node1.customs.example"))
    issued = pki.sign_request(ca, request, now=NOW)
    cert = x509.load_pem_x509_certificate(issued.certificate)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes()))
    assert issued.ca_certificate == (ca / "ca.crt").read_bytes()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "customs-nl",
        "localhost",
        "node1.customs.example",
    }
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "::1",
        "10.0.0.7",
    }
    assert issued.info.agency == "customs-nl" and issued.info.serial == cert.serial_number
    assert issued.info.not_after - NOW == dt.timedelta(days=pki.NODE_DAYS)
    entry = next(e for e in pki.issued_certificates(ca) if e.serial == cert.serial_number)
    assert (entry.agency, entry.revoked_at) == ("customs-nl", None)
    assert entry.not_after == issued.info.not_after
    short = pki.sign_request(ca, _request(tmp_path / "other"), days=3, now=NOW)
    assert short.info.not_after - NOW == dt.timedelta(days=3)
    with pytest.raises(ConfigError, match="not outlive the CA"):
        pki.sign_request(ca, _request(tmp_path / "long"), days=5000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _csr("Bad Agency", []), "agency id 'Bad Agency' is invalid"),
        (lambda: _csr("x", []), "agency id 'x' is invalid"),
        (
            lambda: _csr("customs-nl", [x509.UniformResourceIdentifier(AGENCY + "police-nl")]),
            "more than one agency",
        ),
        # A bare DNS name could be another agency's id, which initiators check.
        (lambda: _csr("customs-nl", [x509.DNSName("police-nl")]), "'police-nl'"),
        (lambda: _csr("customs-nl", [x509.DNSName("*.example.org")]), "does not issue"),
        (lambda: _csr("localhost", []), "'localhost' is refused"),
        (
            lambda: _flip_last_byte(_csr("customs-nl", []), x509.load_pem_x509_csr),
            "signature does not verify",
        ),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "not a certificate request"),
    ],
    ids=[
        "invalid-agency",
        "short-agency",
        "two-agencies",
        "another-agencys-name",
        "wildcard",
        "localhost",
        "tampered",
        "garbage",
    ],
)
def test_sign_refuses_a_bad_request(ca: Path, make: Any, message: str) -> None:
    before = pki.issued_certificates(ca)
    with pytest.raises(ConfigError, match=re.escape(message)):
        pki.sign_request(ca, make())
    assert pki.issued_certificates(ca) == before


def test_sign_needs_the_ca_key(ca: Path, tmp_path: Path) -> None:
    public_only = tmp_path / "ca-copy"
    public_only.mkdir()
    (public_only / "ca.crt").write_bytes((ca / "ca.crt").read_bytes())
    with pytest.raises(NotFound, match="no CA key"):
        pki.sign_request(public_only, _request(tmp_path / "node"))


def test_install_swaps_in_the_pending_key_and_renewal_replaces_the_pair(
    ca: Path, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    tls = node / "tls"
    issued = pki.sign_request(ca, _request(node, hosts=("127.0.0.1",)))
    pending = (tls / "pending.key").read_bytes()
    info = pki.check_certificate(node, "customs-nl", issued.certificate, issued.ca_certificate)
    pki.install_certificate(node, issued.certificate, issued.ca_certificate)
    assert (tls / "node.key").read_bytes() == pending and _mode(tls / "node.key") == 0o600
    assert not (tls / "pending.key").exists()
    assert (tls / "node.crt").read_bytes() == issued.certificate
    assert (tls / "ca.crt").read_bytes() == (ca / "ca.crt").read_bytes()
    assert pki.certificate_expiry(tls / "node.crt") == info.not_after
    assert pki.certificate_info(tls / "node.crt") == info
    with pytest.raises(ConfigError, match="already installed"):
        pki.check_certificate(node, "customs-nl", issued.certificate, issued.ca_certificate)

    renewal = pki.sign_request(ca, _request(node, hosts=("127.0.0.1",)))
    assert (tls / "node.crt").read_bytes() == issued.certificate  # untouched until installed
    pki.check_certificate(node, "customs-nl", renewal.certificate, renewal.ca_certificate)
    pki.install_certificate(node, renewal.certificate, renewal.ca_certificate)
    assert pki.certificate_info(tls / "node.crt").serial == renewal.info.serial
    assert (tls / "node.key").read_bytes() != pending
    key, cert = (tls / "node.key").read_bytes(), (tls / "node.crt").read_bytes()
    assert pki.check_key_pair(key, cert).serial == renewal.info.serial
    with pytest.raises(ConfigError, match="do not belong together"):
        pki.check_key_pair(pending, cert)


def _other_ca(tmp_path: Path) -> Path:
    other = tmp_path / "other-ca"
    pki.init_ca(other, "another CA")
    return other


@pytest.mark.parametrize(
    "case",
    ["another-key", "another-ca", "expired", "not-yet-valid", "wrong-agency", "not-a-ca", "none"],
)
def test_install_refuses_a_certificate_that_does_not_fit_and_changes_nothing(
    ca: Path, tmp_path: Path, case: str
) -> None:
    node = tmp_path / "node"
    ca_pem = (ca / "ca.crt").read_bytes()
    request = _request(node)
    if case == "another-key":
        certificate = pki.sign_request(ca, _request(tmp_path / "elsewhere")).certificate
        message = "another key"
    elif case == "another-ca":
        certificate = pki.sign_request(_other_ca(tmp_path), request).certificate
        message = "is not signed by the CA certificate"
    elif case == "expired":
        certificate = pki.sign_request(ca, request, now=NOW - dt.timedelta(days=40), days=30)
        certificate = certificate.certificate
        message = "expired on"
    elif case == "not-yet-valid":
        certificate = pki.sign_request(ca, request, now=NOW + dt.timedelta(days=2)).certificate
        message = "not valid until"
    elif case == "wrong-agency":
        certificate = pki.sign_request(ca, _request(tmp_path / "p", "police-nl")).certificate
        message = "names agency police-nl, but this node is customs-nl"
    elif case == "not-a-ca":
        certificate = pki.sign_request(ca, request).certificate
        ca_pem = pki.sign_request(ca, _request(tmp_path / "q")).certificate
        message = "not a CA certificate"
    else:
        certificate = b"not a certificate"
        message = "cannot be parsed"
    before = {p.name: p.read_bytes() for p in (node / "tls").iterdir()}
    with pytest.raises(ConfigError, match=message):
        pki.check_certificate(node, "customs-nl", certificate, ca_pem)
    assert {p.name: p.read_bytes() for p in (node / "tls").iterdir()} == before


def test_install_needs_a_pending_request(ca: Path, tmp_path: Path) -> None:
    node = tmp_path / "node"
    issued = pki.sign_request(ca, _request(node))
    (node / "tls" / "pending.key").unlink()
    with pytest.raises(ConfigError, match="no pending certificate request"):
        pki.check_certificate(node, "customs-nl", issued.certificate, issued.ca_certificate)


def test_require_certificate_says_what_to_do(ca: Path, tmp_path: Path) -> None:
    config = NodeConfig(node_dir=tmp_path / "node", agency="customs-nl", listen="127.0.0.1:1")
    with pytest.raises(ConfigError, match="--csr-out FILE"):
        pki.require_certificate(config)
    _request(config.node_dir)
    with pytest.raises(ConfigError, match="no TLS certificate installed yet.*cert install"):
        pki.require_certificate(config)


# -- revocation and CRLs ------------------------------------------------------------------------


@pytest.fixture
def own_ca(tmp_path: Path) -> Path:
    """A CA of this test alone (revocations and CRL numbers are per CA)."""
    path = tmp_path / "own-ca"
    pki.init_ca(path, "revoking CA")
    return path


def _issue(ca_dir: Path, node: Path, agency: str) -> pki.Issued:
    issued = pki.sign_request(ca_dir, _request(node, agency))
    pki.install_certificate(node, issued.certificate, issued.ca_certificate)
    return issued


def test_revoke_by_agency_marks_every_certificate_it_has(own_ca: Path, tmp_path: Path) -> None:
    first = pki.sign_request(own_ca, _request(tmp_path / "a", "border-be")).info.serial
    second = pki.sign_request(own_ca, _request(tmp_path / "b", "border-be")).info.serial
    other = pki.sign_request(own_ca, _request(tmp_path / "c", "police-nl")).info.serial
    revoked, already = pki.revoke(own_ca, agency="border-be", reason="superseded", now=NOW)
    assert {e.serial for e in revoked} == {first, second} and already == []
    assert all(e.reason == "superseded" and e.revoked_at == NOW for e in revoked)
    index = {e.serial: e for e in pki.issued_certificates(own_ca)}
    assert index[other].revoked_at is None
    revoked, already = pki.revoke(own_ca, serial=first)
    assert revoked == [] and [e.serial for e in already] == [first]
    revoked, _ = pki.revoke(own_ca, serial=other)
    assert [e.serial for e in revoked] == [other] and revoked[0].reason is None
    with pytest.raises(NotFound, match="no certificate of agency customs-nl"):
        pki.revoke(own_ca, agency="customs-nl")
    with pytest.raises(NotFound, match="no certificate of serial abc"):
        pki.revoke(own_ca, serial=0xABC)
    with pytest.raises(ConfigError, match="one line"):
        pki.revoke(own_ca, agency="border-be", reason="two\nlines")
    assert pki.parse_serial(f"0x{first:X}") == first == pki.parse_serial(pki.serial_text(first))


def test_crl_lists_revoked_certificates_with_reasons_and_increasing_numbers(
    own_ca: Path, tmp_path: Path
) -> None:
    revoked = pki.sign_request(own_ca, _request(tmp_path / "a", "border-be")).info.serial
    kept = pki.sign_request(own_ca, _request(tmp_path / "b", "police-nl")).info.serial
    pki.revoke(own_ca, agency="border-be", reason="key-compromise", now=NOW)
    texted = pki.sign_request(own_ca, _request(tmp_path / "c", "customs-de")).info.serial
    pki.revoke(own_ca, agency="customs-de", reason="laptop stolen, ticket 4411", now=NOW)
    first, info = pki.make_crl(own_ca, now=NOW)
    crl = x509.load_pem_x509_crl(first)
    ca_cert = x509.load_pem_x509_certificate((own_ca / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert info.number == 1 and info.revoked == 2
    texted_entry = crl.get_revoked_certificate_by_serial_number(texted)
    assert texted_entry is not None and not list(texted_entry.extensions)  # text: no code
    assert {e.serial: e.reason for e in pki.issued_certificates(own_ca)}[texted] == (
        "laptop stolen, ticket 4411"
    )
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - NOW == dt.timedelta(days=pki.CRL_DAYS)
    entry = crl.get_revoked_certificate_by_serial_number(revoked)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(kept) is None
    _, again = pki.make_crl(own_ca)
    assert again.number == 2


def test_node_installs_only_a_newer_crl_of_its_own_ca(own_ca: Path, tmp_path: Path) -> None:
    node = tmp_path / "node"
    _issue(own_ca, node, "customs-nl")
    pki.sign_request(own_ca, _request(tmp_path / "b", "border-be"))
    pki.revoke(own_ca, agency="border-be")
    older, _ = pki.make_crl(own_ca)
    newer, _ = pki.make_crl(own_ca)
    assert pki.check_crl(node, newer).number == 2
    pki.install_crl(node, newer)
    assert pki.installed_crl(node) == pki.check_crl(node, newer)  # the same again: accepted
    with pytest.raises(ConfigError, match="older than the installed number 2"):
        pki.check_crl(node, older)

    other = _other_ca(tmp_path)
    for _ in range(3):  # a higher number than the installed one: refused for its signer alone
        foreign, _ = pki.make_crl(other)
    with pytest.raises(ConfigError, match="not signed by this node's federation CA"):
        pki.check_crl(node, foreign)
    tampered = _flip_last_byte(pki.make_crl(own_ca)[0], x509.load_pem_x509_crl)
    with pytest.raises(ConfigError, match="not signed by this node's federation CA"):
        pki.check_crl(node, tampered)
    with pytest.raises(ConfigError, match="not a certificate revocation list"):
        pki.check_crl(node, b"garbage")
    installed = pki.installed_crl(node)
    assert installed is not None and installed.number == 2


def test_a_crl_number_is_never_reused_with_other_contents(own_ca: Path, tmp_path: Path) -> None:
    node = tmp_path / "node"
    _issue(own_ca, node, "customs-nl")
    crl, _ = pki.make_crl(own_ca)
    pki.install_crl(node, crl)
    # Another list under the same number: only a CA that lost its index would make it.
    index = own_ca / "issued.json"
    data = json.loads(index.read_text())
    data["crl_number"] = 0
    index.write_text(json.dumps(data))
    pki.sign_request(own_ca, _request(tmp_path / "b", "border-be"))
    pki.revoke(own_ca, agency="border-be")
    same_number, info = pki.make_crl(own_ca)
    assert info.number == 1
    with pytest.raises(ConfigError, match="other contents"):
        pki.check_crl(node, same_number)


def test_revocation_list_follows_the_installed_file(
    own_ca: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = tmp_path / "node"
    _issue(own_ca, node, "customs-nl")
    border = pki.sign_request(own_ca, _request(tmp_path / "b", "border-be")).info.serial
    police = pki.sign_request(own_ca, _request(tmp_path / "p", "police-nl")).info.serial
    revocations = pki.RevocationList.load(node / "tls" / "crl.pem")
    assert not revocations.installed and revocations.lookup_blocking(border) is None

    pki.revoke(own_ca, agency="border-be", reason="privilege-withdrawn")
    pki.install_crl(node, pki.make_crl(own_ca)[0])
    found = revocations.lookup_blocking(border)
    assert found is not None and found.reason == "privilege-withdrawn" and found.crl_number == 1
    assert revocations.lookup_blocking(police) is None

    pki.revoke(own_ca, agency="police-nl")
    pki.install_crl(node, pki.make_crl(own_ca)[0])
    assert revocations.lookup_blocking(police) is not None  # re-read: the file changed

    (node / "tls" / "crl.pem").write_bytes(b"broken")
    with caplog.at_level("ERROR", logger="blindmatch.pki"):
        assert revocations.lookup_blocking(police) is not None  # the previous list stays
    assert "cannot be used" in caplog.text
    with pytest.raises(ConfigError, match="not a certificate revocation list"):
        pki.RevocationList.load(node / "tls" / "crl.pem")
    (node / "tls" / "crl.pem").unlink()
    assert revocations.lookup_blocking(police) is None


def test_install_refuses_a_certificate_the_installed_crl_revokes(
    own_ca: Path, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    _issue(own_ca, node, "customs-nl")
    renewal = pki.sign_request(own_ca, _request(node))
    pki.revoke(own_ca, serial=renewal.info.serial)
    pki.install_crl(node, pki.make_crl(own_ca)[0])
    with pytest.raises(ConfigError, match="is revoked by the installed federation CRL"):
        pki.check_certificate(node, "customs-nl", renewal.certificate, renewal.ca_certificate)
