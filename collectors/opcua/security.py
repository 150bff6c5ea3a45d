"""What the collector presents and accepts: identity, certificates, the server's trust.

``identity`` reads the user's password; ``secure`` sets up message security (our
certificate and key, the server's certificate checked against
``security.trusted_server_certificates``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from asyncua import ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from collectors.opcua.errors import OpcUaSetupError, SessionLostError
from envmon.config.opcua import OpcUaCollectorConfig

if TYPE_CHECKING:
    from collectors.opcua.wire import OpcUaClient

logger = logging.getLogger(__name__)

_POLICIES: Final[dict[str, type[security_policies.SecurityPolicy]]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}


def identity(config: OpcUaCollectorConfig, component: str) -> tuple[str, str] | None:
    """Return the user name and password to sign in with (None: anonymous).

    Raises ``OpcUaSetupError`` when the password variable is not set.
    """
    user = config.identity
    if user is None:
        return None
    password = os.environ.get(user.password_env)
    if password is None:
        raise OpcUaSetupError(
            f"{component}: environment variable {user.password_env} "
            f"(the password of OPC-UA user {user.username!r}) is not set"
        )
    return user.username, password


async def secure(client: OpcUaClient, config: OpcUaCollectorConfig, component: str) -> None:
    """Set up message security: our certificate and key, the server's certificate."""
    security = config.security
    assert security.certificate is not None
    assert security.private_key is not None
    policy = _POLICIES[security.policy]
    mode = getattr(ua.MessageSecurityMode, security.mode)
    try:
        certificate = _load_certificate(Path(security.certificate))
    except (OSError, ValueError) as exc:
        raise OpcUaSetupError(
            f"{component}: cannot read certificate {security.certificate}: {exc}"
        ) from exc
    if security.application_uri is None:
        uri = _certificate_uri(certificate)
        if uri is not None:
            client.application_uri = uri
    password = None
    if security.private_key_password_env is not None:
        password = os.environ.get(security.private_key_password_env)
        if password is None:
            raise OpcUaSetupError(
                f"{component}: environment variable "
                f"{security.private_key_password_env} (private key password) is not set"
            )
    server_der = await server_certificate(client, config, component, policy.URI, mode)
    try:
        await client.set_security(
            policy,
            security.certificate,
            security.private_key,
            password,
            server_der,
            mode,
        )
    except (OSError, ValueError, TypeError) as exc:
        raise OpcUaSetupError(
            f"{component}: cannot use certificate {security.certificate} and key "
            f"{security.private_key}: {exc}"
        ) from exc


async def server_certificate(
    client: OpcUaClient, config: OpcUaCollectorConfig, component: str, policy_uri: str, mode: object
) -> bytes:
    """Fetch the server's certificate for the endpoint and check it against the trust list."""
    endpoints = await client.connect_and_get_server_endpoints()
    matching = [
        e for e in endpoints if e.SecurityPolicyUri == policy_uri and e.SecurityMode == mode
    ]
    if not matching:
        offered = sorted(
            {f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints}
        )
        raise SessionLostError(
            f"the server offers no endpoint with {config.security.policy}/"
            f"{config.security.mode} (it offers {', '.join(offered)})"
        )
    der = _first_certificate(matching[0].ServerCertificate or b"")
    certificate = x509.load_der_x509_certificate(der)
    trusted = config.security.trusted_server_certificates
    if not trusted:
        logger.warning(
            "%s: accepting the server certificate %s without verification: list it in "
            "security.trusted_server_certificates",
            component,
            certificate.subject.rfc4514_string(),
        )
        return der
    if not _is_trusted(certificate, [Path(p) for p in trusted]):
        raise SessionLostError(
            f"the server certificate {certificate.subject.rfc4514_string()} is not among "
            "security.trusted_server_certificates"
        )
    return der


def _load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _first_certificate(der: bytes) -> bytes:
    """Return the first certificate of a DER chain (servers may send their chain)."""
    if len(der) < 4:
        return der
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


def _certificate_uri(certificate: x509.Certificate) -> str | None:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _is_trusted(certificate: x509.Certificate, locations: list[Path]) -> bool:
    """Return True when the certificate is a trusted one or was issued by one of them."""
    trusted: list[x509.Certificate] = []
    for location in locations:
        files = sorted(location.iterdir()) if location.is_dir() else [location]
        for file in files:
            if file.suffix.lower() in (".pem", ".der", ".crt", ".cer"):
                try:
                    trusted.append(_load_certificate(file))
                except (OSError, ValueError):
                    logger.warning("cannot read trusted certificate %s", file)
    for candidate in trusted:
        if candidate == certificate:
            return True
        if candidate.subject == certificate.issuer:
            try:
                certificate.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
    return False
