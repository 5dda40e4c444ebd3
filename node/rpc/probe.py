"""One mTLS handshake with a peer, to read the certificate it presents, outside any gRPC call.

`peer_certificate` connects to a peer's address with this node's own key,
certificate and federation CA, offers ALPN ``h2`` as a gRPC client does, checks
that the certificate names the agency we mean (as a DNS name, as
``grpc.ssl_target_name_override`` makes gRPC check, and as its SAN URI), and
closes the connection without sending a request. `match` uses it to refuse a
peer whose certificate the installed CRL revokes before any session starts;
`status` uses it to show when peers' certificates expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from cryptography import x509

from node.errors import ConfigError, PeerError
from node.setup import pki
from node.setup.config import NodeConfig, check_address

__all__ = ["peer_certificate"]


def _client_context(config: NodeConfig) -> ssl.SSLContext:
    """A TLS client context with the node's own key and certificate (blocking: reads files)."""
    pki.require_certificate(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_verify_locations(cafile=config.ca_cert)
        context.load_cert_chain(certfile=config.tls_cert, keyfile=config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the TLS files in {config.tls_cert.parent} ({exc}); re-install the "
            f"certificate with 'blindmatch cert install {config.node_dir} CERT_FILE --ca-cert "
            "CA_CERT_FILE'"
        ) from None
    return context


async def peer_certificate(
    config: NodeConfig, peer: str, address: str, timeout: float
) -> x509.Certificate:
    """The verified certificate `peer` presents at `address`; PeerError if there is none.

    ConfigError if this node has no usable key and certificate of its own.
    """
    host, port = check_address(address, f"peer {peer} address")
    context = await asyncio.to_thread(_client_context, config)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=context,
                server_hostname=peer,
                ssl_handshake_timeout=timeout,
            ),
            timeout,
        )
    except TimeoutError:
        raise PeerError(
            f"peer {peer} at {address} did not complete a TLS handshake within {timeout:.0f} s; "
            "check that it is serving at that address"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise PeerError(
            f"peer {peer} at {address} presented a certificate this node does not accept "
            f"({exc.verify_message}); it must come from the federation CA and name {peer}"
        ) from None
    except ssl.SSLError as exc:
        raise PeerError(
            f"the TLS handshake with peer {peer} at {address} failed ({exc.reason or exc}); "
            "check that both certificates come from the federation CA"
        ) from None
    except OSError as exc:
        raise PeerError(
            f"peer {peer} at {address} is unreachable ({exc.strerror or exc}); check that it "
            "is serving at that address"
        ) from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    certificate = x509.load_der_x509_certificate(der)
    try:
        named = pki.agency_from_certificate(der)
    except ConfigError as exc:
        raise PeerError(
            f"peer {peer} at {address} presented an unusable certificate ({exc})"
        ) from None
    if named != peer:
        raise PeerError(
            f"the node at {address} presented a certificate for agency {named}, not {peer}; "
            f"check peer {peer}'s address in node.toml"
        )
    return certificate
