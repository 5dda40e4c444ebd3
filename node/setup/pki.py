"""The federation's keys and certificates: the CA's side and the node's side (DESIGN §5).

The CA (`CA_DIR`, kept off the nodes; its key never leaves it):

- `init_ca` creates ``ca.key`` (P-256, which gRPC's BoringSSL handles well;
  mode 0600) and a self-signed ``ca.crt`` valid for 10 years.
- `sign_request` verifies a node's certificate request, reads and checks the
  agency it names, and issues a certificate valid for 2 years (default) for
  both TLS server and client authentication. The agency id is the subject CN,
  a SAN URI ``blindmatch://agency/<id>`` (`agency_from_certificate` reads it
  back, so a server identifies its peer from the certificate, never from a
  message) and a SAN DNS name (an initiator checks it with
  ``grpc.ssl_target_name_override``). Every certificate issued is entered in
  ``issued.json`` (`IndexEntry`), written atomically under a lock.
- `revoke` marks certificates revoked in that index, by agency or serial;
  `make_crl` writes a CRL signed by the CA with a CRL number one higher than
  the last.

The node (`NODE_DIR/tls`):

- `make_request` creates the node's next key, ``pending.key`` (0600), and
  returns a certificate request for it. `check_certificate` checks what the
  CA sent back (signed by the given CA certificate, valid now, naming this
  node's agency, for the pending key, not revoked) and `install_certificate`
  swaps it in: ``node.crt``, ``ca.crt``, and ``pending.key`` renamed to
  ``node.key``. `issue_node_certificate` is the three steps in one, for tests
  and tools that hold the CA.
- `check_crl` verifies a CRL against the node's CA certificate and refuses one
  older than the installed one; `install_crl` writes ``crl.pem``.
  `RevocationList` is the installed CRL as a serving node consults it for
  every call, re-read whenever the file changes.
- `generate_audit_key` writes the node's Ed25519 audit signing key
  (``audit.key``, PKCS8 PEM, 0600) and its public half (``audit.pub``).

Private keys are created with mode 0600 from the start (never chmod-ed after
the fact) and never overwritten; every other file is replaced atomically (a
temporary file, then `os.replace`), so a reader sees the old file or the new.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import ConfigError, NotFound
from node.setup.config import NodeConfig, check_agency

__all__ = [
    "AGENCY_URI_PREFIX",
    "CRL_DAYS",
    "NODE_DAYS",
    "EXPIRY_WARNING_DAYS",
    "REASONS",
    "CertificateInfo",
    "CrlInfo",
    "IndexEntry",
    "Issued",
    "Revocation",
    "RevocationList",
    "agency_from_certificate",
    "certificate_expiry",
    "certificate_info",
    "check_certificate",
    "check_crl",
    "check_key_pair",
    "generate_audit_key",
    "init_ca",
    "install_certificate",
    "install_crl",
    "installed_crl",
    "issue_node_certificate",
    "issued_certificates",
    "make_crl",
    "make_request",
    "parse_serial",
    "require_certificate",
    "revoke",
    "serial_text",
    "sign_request",
]

log = logging.getLogger("blindmatch.pki")

AGENCY_URI_PREFIX = "blindmatch://agency/"
NODE_DAYS = 730
"""Default validity of a node certificate."""
EXPIRY_WARNING_DAYS = 30
"""`status` and `serve` warn when a certificate has this many whole days left, or fewer."""
CRL_DAYS = 30
"""A CRL's next_update: how long nodes may rely on it before the CA should issue another."""
_CA_DAYS = 3650
_INDEX_FILE = "issued.json"
_LOCK_FILE = ".lock"
_BACKDATE = dt.timedelta(minutes=5)  # tolerates clocks a little behind the CA's
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")
_LOOPBACK: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
)

REASONS: Mapping[str, x509.ReasonFlags] = MappingProxyType(
    {
        "unspecified": x509.ReasonFlags.unspecified,
        "key-compromise": x509.ReasonFlags.key_compromise,
        "ca-compromise": x509.ReasonFlags.ca_compromise,
        "affiliation-changed": x509.ReasonFlags.affiliation_changed,
        "superseded": x509.ReasonFlags.superseded,
        "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
        "privilege-withdrawn": x509.ReasonFlags.privilege_withdrawn,
    }
)
"""Revocation reasons `revoke` accepts (RFC 5280 §5.3.1), as written on the command line."""


# -- files --------------------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Creates `path` with mode 0600 and writes `data`; refuses to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite a private key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _replace_file(path: Path, data: bytes) -> None:
    """Writes `data` to `path` atomically: a temporary file (0600) beside it, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _tls_dir(node_dir: str | os.PathLike[str]) -> Path:
    return Path(node_dir) / "tls"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """A file's identity (inode, size, mtime): changes whenever the file is replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


# -- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateInfo:
    """What an operator needs to know of a node certificate."""

    agency: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime


def serial_text(serial: int) -> str:
    """A certificate serial as the CLI prints it and `ca revoke --serial` reads it (hex)."""
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """The serial written as hex (``0x`` and colons allowed), or ConfigError."""
    digits = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(digits, 16)
    except ValueError:
        raise ConfigError(
            f"--serial {text!r} is not a hexadecimal serial, e.g. as 'ca sign' prints it"
        ) from None


def _load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{what} cannot be parsed (not PEM or DER X.509)") from None


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def agency_from_certificate(certificate: bytes | x509.Certificate) -> str:
    """Returns the agency id of a certificate (PEM or DER bytes): its SAN URI, else its CN."""
    cert = (
        certificate
        if isinstance(certificate, x509.Certificate)
        else _load_certificate(certificate, "the peer certificate")
    )
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


def certificate_info(certificate: bytes | x509.Certificate | Path) -> CertificateInfo:
    """The agency, serial and validity of a certificate (PEM or DER bytes, or a file)."""
    if isinstance(certificate, Path):
        certificate = _read(certificate, "certificate")
    cert = (
        certificate
        if isinstance(certificate, x509.Certificate)
        else _load_certificate(certificate, "the certificate")
    )
    return CertificateInfo(
        agency=agency_from_certificate(cert),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def certificate_expiry(path: str | os.PathLike[str]) -> dt.datetime:
    """When the certificate in `path` (e.g. a node's tls/node.crt) expires, in UTC."""
    return certificate_info(Path(path)).not_after


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path} ({exc.strerror})") from None


def require_certificate(config: NodeConfig) -> None:
    """Raises ConfigError, saying what to do, unless the node has a key, certificate and CA."""
    missing = [p for p in (config.tls_cert, config.tls_key, config.ca_cert) if not p.exists()]
    if not missing:
        return
    node_dir = config.node_dir
    install = f"'blindmatch cert install {node_dir} CERT_FILE --ca-cert CA_CERT_FILE'"
    if config.tls_pending_key.exists():
        raise ConfigError(
            f"{node_dir} has no TLS certificate installed yet: send the request 'blindmatch init "
            f"--csr-out' wrote to the federation CA operator, then run {install}"
        )
    raise ConfigError(
        f"{node_dir} lacks {', '.join(str(p) for p in missing)}: make a new certificate request "
        f"with 'blindmatch init {node_dir} --agency {config.agency} --listen {config.listen} "
        f"--csr-out FILE', have the federation CA sign it, then run {install}"
    )


# -- the CA: creation, requests, signing --------------------------------------------------------


def init_ca(ca_dir: str | os.PathLike[str], name: str = "blindmatch federation CA") -> Path:
    """Creates a federation CA (`ca.key`, `ca.crt`) in `ca_dir` and returns the certificate path."""
    ca_dir = Path(ca_dir)
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.crt"
    if key_path.exists() or cert_path.exists():
        raise ConfigError(
            f"{ca_dir} already holds a CA; refusing to overwrite it (choose another CA_DIR)"
        )
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _utc_now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
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
    cert_path.write_bytes(_pem(cert))
    return cert_path


def _ca_certificate(ca_dir: Path) -> x509.Certificate:
    cert_path = ca_dir / "ca.crt"
    if not cert_path.exists():
        raise NotFound(
            f"{ca_dir} holds no CA (ca.crt); create one with 'blindmatch ca init {ca_dir}'"
        )
    return _load_certificate(cert_path.read_bytes(), str(cert_path))


def _load_ca(ca_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path = ca_dir / "ca.key"
    cert = _ca_certificate(ca_dir)
    if not key_path.exists():
        raise NotFound(
            f"{ca_dir} holds no CA key (ca.key): sign and revoke on the machine that holds "
            "the federation CA's key"
        )
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key; re-create the CA")
    return key, cert


def _host_entry(host: str) -> x509.GeneralName | None:
    """A listen host as a SAN entry; None for a bare name, which could be another agency's id."""
    host = host.strip().strip("[]")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name == "localhost" or ("." in name and _HOST.fullmatch(name)):
        return x509.DNSName(name)
    return None


def make_request(
    node_dir: str | os.PathLike[str], agency: str, hosts: tuple[str, ...] = ()
) -> bytes:
    """Creates the node's pending key (tls/pending.key, 0600); returns a PEM request for it.

    The request names the agency as CN, SAN URI and DNS name, and the `hosts`
    the node listens on (IP addresses, dotted names and localhost; a bare host
    name is left out, as initiators check the agency id, never the host).
    """
    check_agency(agency)
    tls = _tls_dir(node_dir)
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    pending = tls / "pending.key"
    if pending.exists():
        raise ConfigError(
            f"{pending} holds the key of an earlier request whose certificate is not installed: "
            f"install that certificate with 'blindmatch cert install {node_dir} CERT_FILE "
            f"--ca-cert CA_CERT_FILE', or delete {pending} to make a new request"
        )
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + agency),
        x509.DNSName(agency),
    ]
    for host in hosts:
        entry = _host_entry(host)
        if entry is not None and entry not in names:
            names.append(entry)
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agency)]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pending, _pem_key(key))
    return request.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _Request:
    """A certificate request as the CA read and checked it."""

    csr: x509.CertificateSigningRequest
    agency: str
    hosts: tuple[x509.GeneralName, ...]


def _read_request(data: bytes) -> _Request:
    """Parses a request and checks its signature, key, agency and host names, or ConfigError."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise ConfigError("it is not a certificate request (PEM or DER PKCS#10)") from None
    if not csr.is_signature_valid:
        raise ConfigError(
            "its signature does not verify (altered, or not made with its key); ask the node's "
            "operator for a new request"
        )
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("its key is not EC P-256; make the request with 'blindmatch init'")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    named = {
        uri[len(AGENCY_URI_PREFIX) :]
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(AGENCY_URI_PREFIX)
    }
    named |= {
        cn.value if isinstance(cn.value, str) else cn.value.decode()
        for cn in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    }
    if len(named) != 1:
        raise ConfigError(
            "it names no agency"
            if not named
            else f"it names more than one agency ({', '.join(sorted(named))})"
        )
    agency = check_agency(named.pop(), "its agency")
    if agency == "localhost":
        raise ConfigError("agency id 'localhost' is refused: every node certificate names it")
    hosts: list[x509.GeneralName] = []
    for entry in san:
        if isinstance(entry, x509.UniformResourceIdentifier) and entry.value.startswith(
            AGENCY_URI_PREFIX
        ):
            continue
        if isinstance(entry, x509.IPAddress):
            hosts.append(entry)
        elif isinstance(entry, x509.DNSName) and entry.value in (agency, "localhost"):
            continue
        elif isinstance(entry, x509.DNSName) and _host_entry(entry.value) == entry:
            hosts.append(entry)
        else:
            # A bare DNS name could be another agency's id, which initiators check: refused.
            raise ConfigError(
                f"it asks for the name {entry.value!r}, which this CA does not issue: a node "
                "certificate names its agency, localhost, IP addresses and dotted host names"
            )
    return _Request(csr, agency, tuple(hosts))


@dataclass(frozen=True)
class Issued:
    """A certificate `sign_request` issued, with the CA certificate that verifies it."""

    certificate: bytes
    ca_certificate: bytes
    info: CertificateInfo
    hosts: tuple[str, ...]


def sign_request(
    ca_dir: str | os.PathLike[str],
    request: bytes,
    days: int = NODE_DAYS,
    now: dt.datetime | None = None,
) -> Issued:
    """Issues a node certificate for a request (PEM or DER) and enters it in the CA's index."""
    ca_dir = Path(ca_dir)
    ca_key, ca_cert = _load_ca(ca_dir)
    try:
        checked = _read_request(request)
    except ConfigError as exc:
        raise ConfigError(f"the certificate request was refused: {exc}") from None
    now = now or _utc_now()
    not_after = now + dt.timedelta(days=days)
    if days < 1 or not_after > ca_cert.not_valid_after_utc:
        left = (ca_cert.not_valid_after_utc - now).days
        raise ConfigError(
            f"--days {days}: a certificate must be valid 1 day or more and not outlive the CA "
            f"certificate (which expires in {left} days)"
        )
    names = [
        x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + checked.agency),
        # The agency id as a DNS name lets an initiator check that the node
        # answering is the peer it meant (grpc.ssl_target_name_override).
        x509.DNSName(checked.agency),
        *_LOOPBACK,
    ]
    names += [entry for entry in checked.hosts if entry not in names]
    public_key = checked.csr.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, checked.agency)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    info = certificate_info(cert)
    with _index_lock(ca_dir):
        crl_number, entries = _read_index(ca_dir)
        entry = IndexEntry(info.serial, info.agency, info.not_after, now)
        _write_index(ca_dir, crl_number, [*entries, entry])
    hosts = tuple(str(getattr(entry, "value", entry)) for entry in checked.hosts)
    return Issued(_pem(cert), _pem(ca_cert), info, hosts)


# -- the CA: index, revocation, CRL -------------------------------------------------------------


@dataclass(frozen=True)
class IndexEntry:
    """One certificate the CA issued, as its index keeps it."""

    serial: int
    agency: str
    not_after: dt.datetime
    issued_at: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as issued.json holds it (serial in hex, times ISO 8601 UTC)."""
        return {
            "serial": serial_text(self.serial),
            "agency": self.agency,
            "not_after": self.not_after.isoformat(timespec="seconds"),
            "issued_at": self.issued_at.isoformat(timespec="seconds"),
            "revoked_at": self.revoked_at.isoformat(timespec="seconds")
            if self.revoked_at
            else None,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> IndexEntry:
        """Reads an entry of issued.json (KeyError, ValueError or TypeError if malformed)."""
        revoked = row.get("revoked_at")
        return cls(
            serial=int(row["serial"], 16),
            agency=str(row["agency"]),
            not_after=dt.datetime.fromisoformat(row["not_after"]),
            issued_at=dt.datetime.fromisoformat(row["issued_at"]),
            revoked_at=dt.datetime.fromisoformat(revoked) if revoked else None,
            reason=row.get("reason"),
        )


@contextlib.contextmanager
def _index_lock(ca_dir: Path) -> Iterator[None]:
    """Serialises the CA's commands that read and rewrite its index (sign, revoke, crl)."""
    fd = os.open(ca_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_index(ca_dir: Path) -> tuple[int, list[IndexEntry]]:
    """(last CRL number, entries) of the CA's index; (0, []) before the first certificate."""
    path = ca_dir / _INDEX_FILE
    try:
        data = json.loads(path.read_text())
        return int(data["crl_number"]), [IndexEntry.from_json(r) for r in data["certificates"]]
    except FileNotFoundError:
        return 0, []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not a usable index of issued certificates ({type(exc).__name__}: {exc}); "
            "restore it from a backup"
        ) from None


def _write_index(ca_dir: Path, crl_number: int, entries: list[IndexEntry]) -> None:
    document = {"crl_number": crl_number, "certificates": [e.to_json() for e in entries]}
    _replace_file(ca_dir / _INDEX_FILE, (json.dumps(document, indent=1) + "\n").encode())


def issued_certificates(ca_dir: str | os.PathLike[str]) -> list[IndexEntry]:
    """Every certificate the CA in `ca_dir` issued, oldest first."""
    ca_dir = Path(ca_dir)
    _ca_certificate(ca_dir)
    return _read_index(ca_dir)[1]


def revoke(
    ca_dir: str | os.PathLike[str],
    *,
    agency: str | None = None,
    serial: int | None = None,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[IndexEntry], list[IndexEntry]]:
    """Marks revoked every certificate of `agency`, or the one with `serial`, in the CA's index.

    Returns (revoked now, revoked already). Raises NotFound if the index holds
    no such certificate; a CRL (`make_crl`) carries the change to the nodes.
    """
    if (agency is None) == (serial is None):
        raise ConfigError("revoke by --agency ID or by --serial HEX (exactly one)")
    if reason is not None and (len(reason) > 500 or not reason.isprintable()):
        raise ConfigError("--reason must be one line of at most 500 printable characters")
    if agency is not None:
        check_agency(agency)
    ca_dir = Path(ca_dir)
    _ca_certificate(ca_dir)
    now = now or _utc_now()
    with _index_lock(ca_dir):
        crl_number, entries = _read_index(ca_dir)
        chosen = [
            i
            for i, e in enumerate(entries)
            if (e.agency == agency if agency is not None else e.serial == serial)
        ]
        if not chosen:
            what = (
                f"agency {agency}" if agency is not None else f"serial {serial_text(serial or 0)}"
            )
            raise NotFound(
                f"{ca_dir / _INDEX_FILE} lists no certificate of {what}; "
                "'blindmatch ca sign' enters every certificate it issues there"
            )
        revoked, already = [], []
        for i in chosen:
            if entries[i].revoked_at is not None:
                already.append(entries[i])
                continue
            entries[i] = replace(entries[i], revoked_at=now, reason=reason)
            revoked.append(entries[i])
        if revoked:
            _write_index(ca_dir, crl_number, entries)
    return revoked, already


@dataclass(frozen=True)
class CrlInfo:
    """What an operator needs to know of a CRL."""

    number: int
    revoked: int
    last_update: dt.datetime
    next_update: dt.datetime | None


def _crl_info(crl: x509.CertificateRevocationList) -> CrlInfo:
    return CrlInfo(
        number=_crl_number(crl),
        revoked=len(crl),
        last_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
    )


def make_crl(
    ca_dir: str | os.PathLike[str], days: int = CRL_DAYS, now: dt.datetime | None = None
) -> tuple[bytes, CrlInfo]:
    """A PEM CRL signed by the CA, listing its revoked certificates that have not expired yet.

    Its CRL number is one more than the last one this CA made, so nodes can
    refuse to go back to an older list.
    """
    ca_dir = Path(ca_dir)
    ca_key, ca_cert = _load_ca(ca_dir)
    now = now or _utc_now()
    with _index_lock(ca_dir):
        crl_number, entries = _read_index(ca_dir)
        number = crl_number + 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + dt.timedelta(days=days))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        for entry in entries:
            # An expired certificate is refused by every TLS handshake already.
            if entry.revoked_at is None or entry.not_after <= now:
                continue
            revoked = (
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial)
                .revocation_date(entry.revoked_at)
            )
            code = REASONS.get(entry.reason or "")  # free text stays in the index
            if code is not None:
                revoked = revoked.add_extension(x509.CRLReason(code), False)
            builder = builder.add_revoked_certificate(revoked.build())
        crl = builder.sign(ca_key, hashes.SHA256())
        _write_index(ca_dir, number, entries)
    return crl.public_bytes(serialization.Encoding.PEM), _crl_info(crl)


# -- the node: certificate and CRL installation -------------------------------------------------


def check_certificate(
    node_dir: str | os.PathLike[str],
    agency: str,
    certificate: bytes,
    ca_certificate: bytes,
    now: dt.datetime | None = None,
    names: tuple[str, str] = ("the certificate", "the CA certificate"),
) -> CertificateInfo:
    """Checks a certificate before `install_certificate`; ConfigError names what is wrong.

    It must be signed by `ca_certificate` (itself a CA, valid now), be valid
    now, name `agency`, be for the node's pending key, and not be revoked by
    the node's installed CRL. `names` are how messages call the two files.
    """
    cert_name, ca_name = names
    node_dir = Path(node_dir)
    cert = _load_certificate(certificate, cert_name)
    ca_cert = _load_certificate(ca_certificate, ca_name)
    now = now or _utc_now()
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError(f"{ca_name} is not a CA certificate; use the federation CA's ca.crt")
    if not ca_cert.not_valid_before_utc <= now <= ca_cert.not_valid_after_utc:
        raise ConfigError(
            f"{ca_name} is not valid now (valid {ca_cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{ca_cert.not_valid_after_utc:%Y-%m-%d}); ask the CA operator for the current one"
        )
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"{cert_name} is not signed by {ca_name} ({ca_cert.subject.rfc4514_string()}); "
            "install the certificate together with the CA certificate of the CA that signed it"
        ) from None
    info = certificate_info(cert)
    if now < info.not_before:
        raise ConfigError(
            f"{cert_name} is not valid until {info.not_before:%Y-%m-%d %H:%M} UTC; check this "
            "machine's clock, or install it then"
        )
    if now > info.not_after:
        raise ConfigError(
            f"{cert_name} expired on {info.not_after:%Y-%m-%d %H:%M} UTC; make a new request "
            "with 'blindmatch init --csr-out' and have it signed"
        )
    if info.agency != agency:
        raise ConfigError(
            f"{cert_name} names agency {info.agency}, but this node is {agency}; install the "
            "certificate the CA signed for this node's request"
        )
    tls = _tls_dir(node_dir)
    pending, current = tls / "pending.key", tls / "node.key"
    ours = _public_der(cert.public_key())
    if not pending.exists():
        if current.exists() and _public_der(_private_key(current).public_key()) == ours:
            raise ConfigError(f"{cert_name} is the certificate already installed; nothing to do")
        raise ConfigError(
            f"{node_dir} has no pending certificate request (tls/pending.key): make one with "
            f"'blindmatch init {node_dir} --agency {agency} --listen HOST:PORT --csr-out FILE'"
        )
    if _public_der(_private_key(pending).public_key()) != ours:
        raise ConfigError(
            f"{cert_name} is for another key than this node's pending request (tls/pending.key); "
            "install the certificate signed for the request this node made last"
        )
    revocation = RevocationList(tls / "crl.pem").lookup_blocking(info.serial)
    if revocation is not None:
        raise ConfigError(
            f"{cert_name} (serial {serial_text(info.serial)}) is revoked by the installed "
            "federation CRL; make a new request and have it signed"
        )
    return info


def check_key_pair(key: bytes, certificate: bytes) -> CertificateInfo:
    """The certificate's details if `key` (PEM) is its private key; else ConfigError."""
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the TLS key is not a readable private key ({exc})") from None
    cert = _load_certificate(certificate, "the TLS certificate")
    if _public_der(private.public_key()) != _public_der(cert.public_key()):
        raise ConfigError("the TLS key and certificate do not belong together")
    return certificate_info(cert)


def _private_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a readable private key ({exc})") from None


def install_certificate(
    node_dir: str | os.PathLike[str], certificate: bytes, ca_certificate: bytes
) -> None:
    """Installs a certificate `check_certificate` accepted: node.crt, ca.crt, pending.key as key.

    Each file is replaced atomically; the key is swapped last, and a serving
    node uses a key and certificate only once they match (`node.rpc.server`).
    """
    tls = _tls_dir(node_dir)
    _replace_file(tls / "ca.crt", _pem(_load_certificate(ca_certificate, "the CA certificate")))
    _replace_file(tls / "node.crt", _pem(_load_certificate(certificate, "the certificate")))
    os.replace(tls / "pending.key", tls / "node.key")


def issue_node_certificate(
    ca_dir: str | os.PathLike[str],
    node_dir: str | os.PathLike[str],
    agency: str,
    hosts: tuple[str, ...] = (),
) -> Path:
    """Request, sign, install in one step (tests and tools holding the CA); returns node.crt.

    Nothing is audited: `blindmatch init --ca` does the same steps with an audit entry.
    """
    issued = sign_request(ca_dir, make_request(node_dir, agency, hosts))
    check_certificate(node_dir, agency, issued.certificate, issued.ca_certificate)
    install_certificate(node_dir, issued.certificate, issued.ca_certificate)
    return _tls_dir(node_dir) / "node.crt"


def _load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise ConfigError(f"{what} is not a certificate revocation list (PEM or DER)") from None


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        raise ConfigError("the CRL has no CRL number; make it with 'blindmatch ca crl'") from None


def installed_crl(node_dir: str | os.PathLike[str]) -> CrlInfo | None:
    """The CRL the node installed (tls/crl.pem), or None."""
    path = _tls_dir(node_dir) / "crl.pem"
    if not path.exists():
        return None
    return _crl_info(_load_crl(_read(path, "CRL"), str(path)))


def check_crl(node_dir: str | os.PathLike[str], crl_data: bytes, what: str = "the CRL") -> CrlInfo:
    """Checks a CRL before `install_crl`: signed by the node's CA, not older than the installed.

    Raises ConfigError naming what is wrong. A CRL with the installed number is
    accepted only if it is the installed one byte for byte.
    """
    tls = _tls_dir(node_dir)
    ca_path = tls / "ca.crt"
    ca_cert = _load_certificate(_read(ca_path, "CA certificate"), str(ca_path))
    crl = _load_crl(crl_data, what)
    ca_key = ca_cert.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{ca_path} does not hold an EC key; re-install the federation CA's")
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_key):
        raise ConfigError(
            f"{what} is not signed by this node's federation CA ({ca_path}, "
            f"{ca_cert.subject.rfc4514_string()}); install the CRL the federation CA made"
        )
    try:
        info = _crl_info(crl)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    current = installed_crl(node_dir)
    if current is not None and info.number < current.number:
        raise ConfigError(
            f"{what} is CRL number {info.number}, older than the installed number "
            f"{current.number}; install the CA's latest CRL"
        )
    if current is not None and info.number == current.number:
        installed = _load_crl((tls / "crl.pem").read_bytes(), "the installed CRL")
        if installed.public_bytes(serialization.Encoding.DER) != crl.public_bytes(
            serialization.Encoding.DER
        ):
            raise ConfigError(
                f"{what} has the installed CRL number {info.number} but other contents; "
                "the CA makes each CRL with a new number: install its latest one"
            )
    return info


def install_crl(node_dir: str | os.PathLike[str], crl_data: bytes) -> None:
    """Installs a CRL `check_crl` accepted as tls/crl.pem, atomically."""
    crl = _load_crl(crl_data, "the CRL")
    _replace_file(_tls_dir(node_dir) / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate, as the node's installed CRL says."""

    serial: int
    revoked_at: dt.datetime
    reason: str | None
    crl_number: int
    installed_at: dt.datetime
    """When the CRL was installed (the file's modification time)."""


class RevocationList:
    """The node's installed CRL, read again whenever the file changes (one stat per lookup).

    A CRL that cannot be read when it changes is logged and the previous
    revocations are kept; with no file, nothing is revoked.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._revoked: dict[int, Revocation] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RevocationList:
        """Reads the CRL at `path` now; ConfigError if it exists but cannot be used."""
        revocations = cls(path)
        stamp = _stamp(revocations.path)
        if stamp is not None:
            revocations._revoked = revocations._parse(stamp)
            revocations._stamp = stamp
        return revocations

    @property
    def installed(self) -> bool:
        """Whether a CRL file is installed."""
        return self.path.exists()

    def lookup_blocking(self, serial: int) -> Revocation | None:
        """The revocation of `serial`, or None (stats the file; re-reads it if it changed)."""
        stamp = _stamp(self.path)
        with self._lock:
            if stamp != self._stamp:
                self._reload(stamp)
            return self._revoked.get(serial)

    def _reload(self, stamp: tuple[int, int, int] | None) -> None:
        self._stamp = stamp  # a broken file is reported once, not on every call
        if stamp is None:
            if self._revoked:
                log.warning("%s was removed: no certificate is refused as revoked", self.path)
            self._revoked = {}
            return
        try:
            self._revoked = self._parse(stamp)
        except ConfigError as exc:
            log.error("%s changed but cannot be used; the previous CRL stays: %s", self.path, exc)
            return
        log.info("federation CRL reloaded from %s: %d revoked", self.path, len(self._revoked))

    def _parse(self, stamp: tuple[int, int, int]) -> dict[int, Revocation]:
        crl = _load_crl(_read(self.path, "CRL"), str(self.path))
        number = _crl_number(crl)
        installed_at = dt.datetime.fromtimestamp(stamp[2] / 1e9, dt.UTC)
        revoked = {}
        for entry in crl:
            try:
                flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
                reason: str | None = flag.name.replace("_", "-")
            except x509.ExtensionNotFound:
                reason = None
            revoked[entry.serial_number] = Revocation(
                entry.serial_number, entry.revocation_date_utc, reason, number, installed_at
            )
        return revoked


# -- audit key ----------------------------------------------------------------------------------


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
