"""TLS material: a development CA for a fresh install, and the server's TLS context.

A directory server without TLS is useless to SSSD (it refuses password logins over a
plain connection), so a fresh install must speak LDAPS and StartTLS out of the box.
When the admin configures no certificate, :func:`ensure_dev_certificate` makes a small
private CA and a server certificate signed by it in ``<data_dir>/tls``; clients trust
``ca.pem``. libldap checks the certificate against the host it dialled, so the server
certificate names ``localhost``, ``127.0.0.1``, ``::1`` and the machine's hostname.

The material is made once and reused while it is valid. A server certificate that is
about to expire, no longer matches its key, or lacks the current hostname is re-issued
from the same CA so that clients which already trust ``ca.pem`` keep working.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.logger import Logger

__all__ = [
    "CA_LIFETIME",
    "RENEW_BEFORE",
    "SERVER_CERT_LIFETIME",
    "CertificateError",
    "DevCertificate",
    "ensure_dev_certificate",
    "load_server_context",
]

log = Logger()

CA_LIFETIME = datetime.timedelta(days=3650)
#: 825 days: the longest leaf lifetime Apple platforms accept.
SERVER_CERT_LIFETIME = datetime.timedelta(days=825)
#: Material closer than this to its expiry is replaced at start-up.
RENEW_BEFORE = datetime.timedelta(days=30)
#: Tolerance for clients whose clocks run a little behind ours.
_BACKDATE = datetime.timedelta(hours=1)

_TLS_DIR = "tls"
_CA_CERT = "ca.pem"
_CA_KEY = "ca.key"
_SERVER_CERT = "server.pem"
_SERVER_KEY = "server.key"

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class CertificateError(ValueError):
    """TLS material that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class DevCertificate:
    """Paths of the development TLS material in the data directory."""

    ca_path: Path
    cert_path: Path
    key_path: Path
    #: True when this call made (or re-issued) the server certificate.
    created: bool = False


# --------------------------------------------------------------------------- helpers


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _load_certificates(path: Path) -> list[x509.Certificate]:
    """All certificates in a PEM file, in file order (leaf first for a chain file)."""
    data = _read(path)
    certs: list[x509.Certificate] = []
    for label, block in _pem_blocks(data):
        if label not in ("CERTIFICATE", "X509 CERTIFICATE"):
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CertificateError(f"{path}: malformed certificate: {exc}") from exc
    if not certs:
        raise CertificateError(f"{path}: no PEM certificate found")
    return certs


def _load_private_key(path: Path) -> PrivateKeyTypes:
    """The first private key in a PEM file (which may also hold certificates)."""
    data = _read(path)
    for label, block in _pem_blocks(data):
        if label == "ENCRYPTED PRIVATE KEY":
            raise CertificateError(f"{path}: encrypted private keys are not supported")
        if label.endswith("PRIVATE KEY"):
            try:
                return serialization.load_pem_private_key(block, password=None)
            except (ValueError, TypeError) as exc:
                raise CertificateError(f"{path}: malformed private key: {exc}") from exc
    raise CertificateError(f"{path}: no PEM private key found")


def _spki(key: CertificatePublicKeyTypes | PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    return _spki(cert.public_key()) == _spki(key.public_key())


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write a file so that no reader ever sees it half written or with loose mode."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed a 0644 certificate
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _hostname() -> str | None:
    """The machine's hostname if it can appear in a DNS subjectAltName.

    Only ``gethostname()``: a resolver lookup (``getfqdn``) can hang for seconds on a
    machine with broken DNS, and start-up must not depend on DNS.
    """
    name = socket.gethostname().strip().rstrip(".").lower()
    if not name or name == "localhost" or not name.isascii():
        return None
    if not re.fullmatch(
        r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*", name
    ):
        return None
    return name


def _server_names() -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns = ["localhost"]
    host = _hostname()
    if host is not None:
        dns.append(host)
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv6Address("::1"),
    ]
    return dns, ips


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _issue_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    host = _hostname() or "localhost"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ldapsrv"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ldapsrv development CA ({host})"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_server(
    now: datetime.datetime,
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    dns, ips = _server_names()
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    alt_names += [x509.IPAddress(ip) for ip in ips]
    not_after = min(now + SERVER_CERT_LIFETIME, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[-1])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _valid_for_a_while(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _usable_ca(
    ca_path: Path, ca_key_path: Path, now: datetime.datetime
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None:
    """The existing CA and its key, or None when they are missing, broken or expiring."""
    if not (ca_path.exists() and ca_key_path.exists()):
        return None
    try:
        ca_cert = _load_certificates(ca_path)[0]
        ca_key = _load_private_key(ca_key_path)
    except CertificateError as exc:
        log.warn("Replacing unusable development CA: {error}", error=str(exc))
        return None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not _key_matches(ca_cert, ca_key):
        return None
    if not _valid_for_a_while(ca_cert, now):
        return None
    return ca_cert, ca_key


def _usable_server_cert(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate, now: datetime.datetime
) -> bool:
    """Whether the existing server certificate can be served as it is."""
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = _load_certificates(cert_path)[0]
        key = _load_private_key(key_path)
    except CertificateError as exc:
        log.warn("Replacing unusable development certificate: {error}", error=str(exc))
        return False
    if not _key_matches(cert, key) or not _valid_for_a_while(cert, now):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns, ips = _server_names()
    present_dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    present_ips = set(san.get_values_for_type(x509.IPAddress))
    return set(dns) <= present_dns and set(ips) <= present_ips


# ------------------------------------------------------------------------ public API


def served_certificate_path(cert: Path | None, data_dir: Path) -> Path:
    """The certificate the server presents: ``tls.cert``, or the development one."""
    return cert if cert is not None else Path(data_dir) / _TLS_DIR / _SERVER_CERT


def ensure_dev_certificate(data_dir: Path) -> DevCertificate:
    """Make (once) a development CA and a server certificate under ``data_dir/tls``.

    Existing material is reused while valid. The directory is mode 0700 and the key
    files 0600: the CA key can mint certificates that every client trusting ``ca.pem``
    accepts.
    """
    tls_dir = Path(data_dir) / _TLS_DIR
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    ca_path = tls_dir / _CA_CERT
    ca_key_path = tls_dir / _CA_KEY
    cert_path = tls_dir / _SERVER_CERT
    key_path = tls_dir / _SERVER_KEY
    now = _now()

    ca_cert: x509.Certificate
    ca_key: CertificateIssuerPrivateKeyTypes
    ca = _usable_ca(ca_path, ca_key_path, now)
    if ca is None:
        ca_cert, ca_key = _issue_ca(now)
        _write_atomically(ca_key_path, _key_pem(ca_key), 0o600)
        _write_atomically(ca_path, _cert_pem(ca_cert), 0o644)
        log.info("Created development CA {path}: clients must trust it", path=str(ca_path))
    else:
        ca_cert, ca_key = ca
        if _usable_server_cert(cert_path, key_path, ca_cert, now):
            for path in (ca_key_path, key_path):
                os.chmod(path, 0o600)
            return DevCertificate(ca_path=ca_path, cert_path=cert_path, key_path=key_path)

    cert, key = _issue_server(now, ca_cert, ca_key)
    _write_atomically(key_path, _key_pem(key), 0o600)
    _write_atomically(cert_path, _cert_pem(cert), 0o644)
    log.info(
        "Issued development server certificate {cert} (key {key}) signed by {ca}",
        cert=str(cert_path),
        key=str(key_path),
        ca=str(ca_path),
    )
    return DevCertificate(ca_path=ca_path, cert_path=cert_path, key_path=key_path, created=True)


def _certificate_options(
    key: PrivateKeyTypes,
    leaf: x509.Certificate,
    chain: list[x509.Certificate],
    *,
    native: bool,
) -> ssl.CertificateOptions:
    """CertificateOptions with its context made, so that bad material fails now.

    Recent pyOpenSSL takes ``cryptography`` objects directly and deprecates its own
    ``PKey``/``X509`` wrappers; Twisted only passes them through to pyOpenSSL.
    """
    if native:
        options = ssl.CertificateOptions(
            privateKey=key,  # type: ignore[arg-type]
            certificate=leaf,  # type: ignore[arg-type]
            extraCertChain=chain,  # type: ignore[arg-type]
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
    else:
        options = ssl.CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
            certificate=crypto.X509.from_cryptography(leaf),
            extraCertChain=[crypto.X509.from_cryptography(c) for c in chain],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
    options.getContext()
    return options


def load_server_context(cert_path: Path, key_path: Path) -> ssl.CertificateOptions:
    """A TLS 1.2+ server context from a PEM certificate (chain) and its private key.

    ``cert_path`` holds the server certificate first, optionally followed by the
    intermediate certificates that complete its chain; ``key_path`` may be the same
    file. Problems are reported here, at start-up, not at the first handshake.
    """
    cert_path = Path(cert_path)
    key_path = Path(key_path)
    certs = _load_certificates(cert_path)
    key = _load_private_key(key_path)
    leaf = certs[0]
    if not _key_matches(leaf, key):
        raise CertificateError(
            f"{key_path}: private key does not match the certificate in {cert_path}"
        )
    if leaf.not_valid_after_utc <= _now():
        log.warn(
            "TLS certificate {path} expired on {when}",
            path=str(cert_path),
            when=leaf.not_valid_after_utc.isoformat(),
        )
    try:
        options = _certificate_options(key, leaf, certs[1:], native=True)
    except TypeError:  # pyOpenSSL < 24.3 wants its own wrappers
        options = _certificate_options(key, leaf, certs[1:], native=False)
    except Exception as exc:  # OpenSSL.SSL.Error carries a list of reasons
        raise CertificateError(f"{cert_path}: unusable TLS material: {exc}") from exc
    return options
