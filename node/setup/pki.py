"""The federation's keys and certificates: a CA, one TLS certificate per node, audit keys.

- `init_ca` creates a federation CA (P-256, which gRPC's BoringSSL handles
  well): `ca.key` (mode 0600) and a self-signed `ca.crt` valid for 10 years.
- `issue_node_certificate` gives a node `tls/node.key` (0600) and `tls/node.crt`,
  valid for 2 years, for both TLS server and client authentication. The
  agency id is the subject CN *and* a SAN URI ``blindmatch://agency/<id>``;
  `agency_from_certificate` reads it back, so a server identifies its peer
  from the certificate, never from a message field.
- `generate_audit_key` writes the node's Ed25519 audit signing key
  (`audit.key`, PKCS8 PEM, 0600) and its public half (`audit.pub`).

Private keys are written with mode 0600 from the start (never chmod-ed after
the fact) and never overwritten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import ConfigError, NotFound
from node.setup.config import check_agency

__all__ = [
    "AGENCY_URI_PREFIX",
    "agency_from_certificate",
    "generate_audit_key",
    "init_ca",
    "issue_node_certificate",
]

AGENCY_URI_PREFIX = "blindmatch://agency/"
_CA_DAYS = 3650
_NODE_DAYS = 730


def _write_private(path: Path, data: bytes) -> None:
    """Creates `path` with mode 0600 and writes `data`; refuses to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite a private key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_ca(ca_dir: str | os.PathLike[str], name: str = "blindmatch federation CA") -> Path:
    """Creates a federation CA (`ca.key`, `ca.crt`) in `ca_dir` and returns the certificate path."""
    ca_dir = Path(ca_dir)
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.crt"
    if key_path.exists() or cert_path.exists():
        raise ConfigError(
            f"{ca_dir} already holds a CA; refusing to overwrite it (choose another CA_DIR)"
        )
    ca_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def _load_ca(ca_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.crt"
    if not key_path.exists() or not cert_path.exists():
        raise NotFound(
            f"{ca_dir} holds no CA (ca.key and ca.crt); "
            f"create one with 'blindmatch ca init {ca_dir}'"
        )
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key; re-create the CA")
    return key, x509.load_pem_x509_certificate(cert_path.read_bytes())


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def issue_node_certificate(
    ca_dir: str | os.PathLike[str],
    node_dir: str | os.PathLike[str],
    agency: str,
    hosts: tuple[str, ...] = (),
) -> Path:
    """Issues `node_dir/tls/node.{key,crt}` for `agency`, copies the CA certificate; returns crt."""
    check_agency(agency)
    ca_key, ca_cert = _load_ca(Path(ca_dir))
    tls = Path(node_dir) / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + agency),
        # The agency id as a DNS name lets an initiator check that the node
        # answering is the peer it meant (grpc.ssl_target_name_override).
        x509.DNSName(agency),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for host in hosts:
        entry = _san_entry(host)
        if entry not in names:
            names.append(entry)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agency)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_NODE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(tls / "node.key", _pem_key(key))
    cert_path = tls / "node.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    shutil.copyfile(Path(ca_dir) / "ca.crt", tls / "ca.crt")
    return cert_path


def agency_from_certificate(certificate: bytes) -> str:
    """Returns the agency id of a PEM or DER certificate: its SAN URI, else its CN."""
    try:
        if certificate.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(certificate)
        else:
            cert = x509.load_der_x509_certificate(certificate)
    except ValueError:
        raise ConfigError("the peer certificate cannot be parsed (not PEM or DER X.509)") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(AGENCY_URI_PREFIX):
                return check_agency(uri[len(AGENCY_URI_PREFIX) :], "certificate SAN")
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise ConfigError("the peer certificate names no agency (no SAN URI and no CN)")
    value = cns[0].value
    return check_agency(value if isinstance(value, str) else value.decode(), "certificate CN")


def generate_audit_key(node_dir: str | os.PathLike[str]) -> Path:
    """Creates the Ed25519 audit signing key `audit.key` (0600) and `audit.pub`; returns the key."""
    node_dir = Path(node_dir)
    key = Ed25519PrivateKey.generate()
    key_path = node_dir / "audit.key"
    _write_private(key_path, _pem_key(key))
    (node_dir / "audit.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path
