"""Tests for node.pki: CA, node certificates carrying the agency id, key file modes."""

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.data import audit
from node.errors import ConfigError
from node.setup import pki
from node.setup.config import NodeConfig


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
