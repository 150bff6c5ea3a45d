"""Test certificates: keys by kind, one certificate builder (``issue``), PEM and DER writers.

The MQTT tests make an EC certificate authority that signs a server and a client
certificate (PEM files); the OPC-UA tests make self-signed RSA application certificates
with their application URI in the subject alternative names (DER certificates, PEM keys).
Both build them here::

    ca = issue("test CA", "ec", ca=True)
    server = issue("server", "ec", issuer=ca, sans=["127.0.0.1", "localhost"])
    write_pem(server.cert, folder / "server.crt"), write_pem(server.key, folder / "server.key")
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KeyKind = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: Key usages a certificate may name (``x509.KeyUsage`` flags); a CA always has the
#: certificate and CRL signing ones.
Usage = Literal["digital_signature", "content_commitment", "key_encipherment", "data_encipherment"]
_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
#: Every certificate is valid from a day ago for a month.
VALID_BEFORE_NOW = dt.timedelta(days=1)
VALID_AFTER_NOW = dt.timedelta(days=30)


@dataclass(frozen=True)
class Credential:
    """A private key and its certificate."""

    key: PrivateKey
    cert: x509.Certificate


def make_key(kind: KeyKind) -> PrivateKey:
    """Return a new private key: EC on P-256 or RSA 2048."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def subject_alt_name(name: str) -> x509.GeneralName:
    """Return ``name`` as a SAN entry: an IP address, a URI (it has a colon) or a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    return x509.UniformResourceIdentifier(name) if ":" in name else x509.DNSName(name)


def issue(
    subject: str,
    kind: KeyKind,
    *,
    issuer: Credential | None = None,
    ca: bool = False,
    sans: Iterable[str] = (),
    usages: Iterable[Usage] = (),
    extended_usages: Iterable[x509.ObjectIdentifier] = (),
) -> Credential:
    """Return a new key of ``kind`` and a certificate for it named ``subject`` (common name).

    It is signed by ``issuer`` (and names its key), or self-signed without one. ``ca`` makes
    a certificate authority (it may sign certificates and CRLs); ``sans`` are the subject
    alternative names (see ``subject_alt_name``); ``usages`` and ``extended_usages`` the
    key usages and extended key usages (none: the extension is left out).
    """
    key = make_key(kind)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - VALID_BEFORE_NOW)
        .not_valid_after(now + VALID_AFTER_NOW)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    flags = set(usages) | ({"digital_signature", "key_cert_sign", "crl_sign"} if ca else set())
    if flags:
        usage = x509.KeyUsage(**{flag: flag in flags for flag in _KEY_USAGE_FLAGS})
        builder = builder.add_extension(usage, critical=True)
    if extended := list(extended_usages):
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if alt_names := [subject_alt_name(san) for san in sans]:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    signer = issuer.key if issuer is not None else key
    return Credential(key, builder.sign(signer, hashes.SHA256()))


def write_pem(item: x509.Certificate | PrivateKey, path: Path) -> Path:
    """Write a certificate, or a private key (PKCS #8, unencrypted), as PEM; return ``path``."""
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def write_der(cert: x509.Certificate, path: Path) -> Path:
    """Write a certificate as DER; return ``path``."""
    path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return path
