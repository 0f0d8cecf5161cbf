"""Development certificates and the server TLS context (ldapsrv.tls)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion

import ldapsrv.tls as tls
from ldapsrv.tls import (
    CertificateError,
    DevCertificate,
    ensure_dev_certificate,
    load_server_context,
)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def dev(tmp_path: Path) -> DevCertificate:
    return ensure_dev_certificate(tmp_path / "data")


def in_days(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


# ---------------------------------------------------------------- the material


def test_dev_certificate_files_live_in_the_data_dir_tls_folder(tmp_path: Path) -> None:
    dev = ensure_dev_certificate(tmp_path / "data")
    tls_dir = tmp_path / "data" / "tls"
    assert (dev.ca_path, dev.cert_path, dev.key_path) == (
        tls_dir / "ca.pem",
        tls_dir / "server.pem",
        tls_dir / "server.key",
    )
    assert dev.created


def test_ca_is_a_certificate_authority_valid_for_ten_years(dev: DevCertificate) -> None:
    ca = load_cert(dev.ca_path)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert ca.issuer == ca.subject
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert datetime.timedelta(days=3649) < lifetime < datetime.timedelta(days=3652)


def test_server_certificate_names_loopback_localhost_and_hostname(dev: DevCertificate) -> None:
    cert = load_cert(dev.cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = set(san.get_values_for_type(x509.IPAddress))
    assert "localhost" in dns
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= ips
    hostname = socket.gethostname().lower()
    if hostname and hostname != "localhost" and hostname.isascii():
        assert hostname in dns


def test_server_certificate_is_a_leaf_for_server_auth_signed_by_the_ca(
    dev: DevCertificate,
) -> None:
    ca = load_cert(dev.ca_path)
    cert = load_cert(dev.cert_path)
    cert.verify_directly_issued_by(ca)  # raises if not signed by the CA
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=825, hours=2)
    assert lifetime >= datetime.timedelta(days=824)


def test_keys_are_private_to_the_owner(dev: DevCertificate) -> None:
    assert mode(dev.key_path) == 0o600
    assert mode(dev.key_path.parent / "ca.key") == 0o600
    assert mode(dev.key_path.parent) == 0o700


def test_openssl_verifies_the_chain_for_127_0_0_1_and_localhost(dev: DevCertificate) -> None:
    """The same check libldap makes: chain to the CA and name the dialled host."""
    for host in ("127.0.0.1", "localhost"):
        client = ssl.create_default_context(cafile=str(dev.ca_path))
        version = handshake(load_server_context(dev.cert_path, dev.key_path), client, host)
        assert version in ("TLSv1.2", "TLSv1.3")


# ------------------------------------------------------------------- reuse


def test_second_call_reuses_the_existing_material(tmp_path: Path) -> None:
    first = ensure_dev_certificate(tmp_path)
    contents = [p.read_bytes() for p in (first.ca_path, first.cert_path, first.key_path)]
    second = ensure_dev_certificate(tmp_path)
    assert not second.created
    assert [p.read_bytes() for p in (second.ca_path, second.cert_path, second.key_path)] == (
        contents
    )


def test_expiring_server_certificate_is_reissued_by_the_same_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_dev_certificate(tmp_path)
    ca_before = first.ca_path.read_bytes()
    leaf_before = first.cert_path.read_bytes()
    monkeypatch.setattr(tls, "_now", lambda: in_days(820))
    second = ensure_dev_certificate(tmp_path)
    assert second.created
    assert second.ca_path.read_bytes() == ca_before  # clients keep trusting ca.pem
    assert second.cert_path.read_bytes() != leaf_before
    load_cert(second.cert_path).verify_directly_issued_by(load_cert(second.ca_path))


def test_expiring_ca_is_replaced_with_a_new_ca_and_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_dev_certificate(tmp_path)
    ca_before = first.ca_path.read_bytes()
    monkeypatch.setattr(tls, "_now", lambda: in_days(3645))
    second = ensure_dev_certificate(tmp_path)
    assert second.ca_path.read_bytes() != ca_before
    load_cert(second.cert_path).verify_directly_issued_by(load_cert(second.ca_path))


def test_corrupt_server_key_is_replaced(tmp_path: Path) -> None:
    first = ensure_dev_certificate(tmp_path)
    first.key_path.write_text("garbage\n")
    second = ensure_dev_certificate(tmp_path)
    assert second.created
    load_server_context(second.cert_path, second.key_path)  # the pair matches again


def test_certificate_without_the_current_hostname_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_dev_certificate(tmp_path)
    monkeypatch.setattr(socket, "gethostname", lambda: "renamed-host.example")
    second = ensure_dev_certificate(tmp_path)
    assert second.created
    san = load_cert(second.cert_path).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "renamed-host.example" in san.value.get_values_for_type(x509.DNSName)


def test_hostname_that_is_not_a_dns_name_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "bad host!")
    dev = ensure_dev_certificate(tmp_path)
    san = load_cert(dev.cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]


# ------------------------------------------------------------ server context


def handshake(options: object, client: ssl.SSLContext, server_hostname: str) -> str:
    """Run a TLS handshake in memory between the server options and a stdlib client."""
    server = SSL.Connection(options.getContext(), None)  # type: ignore[attr-defined]
    server.set_accept_state()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = client.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    client_done = server_done = False
    for _ in range(50):
        if not client_done:
            try:
                conn.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        data = outgoing.read()
        if data:
            server.bio_write(data)
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except SSL.WantReadError:
                pass
        try:
            reply = server.bio_read(65536)
        except SSL.WantReadError:
            reply = b""
        if reply:
            incoming.write(reply)
        if client_done and server_done and not reply and not data:
            version = conn.version()
            assert version is not None
            return version
    raise AssertionError("TLS handshake did not finish")


def make_chain(directory: Path) -> tuple[Path, Path, Path]:
    """root CA -> intermediate CA -> leaf for 127.0.0.1; returns (root, chain, key)."""
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(
        subject: str,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        else:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        return builder.sign(signer, hashes.SHA256())

    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = build("test root", "test root", root_key, root_key, ca=True)
    mid = build("test intermediate", "test root", mid_key, root_key, ca=True)
    leaf = build("127.0.0.1", "test intermediate", leaf_key, mid_key, ca=False)
    pem = serialization.Encoding.PEM
    root_path, chain_path, key_path = (directory / n for n in ("root.pem", "chain.pem", "key.pem"))
    root_path.write_bytes(root.public_bytes(pem))
    chain_path.write_bytes(leaf.public_bytes(pem) + mid.public_bytes(pem))
    key_path.write_bytes(
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return root_path, chain_path, key_path


def test_context_sends_the_intermediate_from_a_chain_file(tmp_path: Path) -> None:
    root, chain, key = make_chain(tmp_path)
    client = ssl.create_default_context(cafile=str(root))  # trusts only the root
    assert handshake(load_server_context(chain, key), client, "127.0.0.1") in (
        "TLSv1.2",
        "TLSv1.3",
    )


def test_context_accepts_key_and_certificate_in_one_file(tmp_path: Path) -> None:
    root, chain, key = make_chain(tmp_path)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(key.read_bytes() + chain.read_bytes())
    client = ssl.create_default_context(cafile=str(root))
    handshake(load_server_context(combined, combined), client, "127.0.0.1")


def tls_1_1_client(ca_path: Path) -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=str(ca_path))
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    client.minimum_version = ssl.TLSVersion.TLSv1_1
    client.maximum_version = ssl.TLSVersion.TLSv1_1
    return client


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_context_refuses_clients_limited_to_tls_1_1(dev: DevCertificate) -> None:
    # Control: this machine's OpenSSL can still speak TLS 1.1 when a server allows it,
    # so a failed handshake below is the server's floor and not the client's.
    key = serialization.load_pem_private_key(dev.key_path.read_bytes(), None)
    permissive = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
        certificate=crypto.X509.from_cryptography(load_cert(dev.cert_path)),
        insecurelyLowerMinimumTo=TLSVersion.TLSv1_1,
    )
    permissive.getContext().set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    try:
        handshake(permissive, tls_1_1_client(dev.ca_path), "localhost")
    except (ssl.SSLError, SSL.Error) as exc:
        pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all, nothing to prove: {exc}")

    with pytest.raises((ssl.SSLError, SSL.Error)):
        handshake(
            load_server_context(dev.cert_path, dev.key_path),
            tls_1_1_client(dev.ca_path),
            "localhost",
        )


def test_mismatched_key_is_reported_with_both_file_names(tmp_path: Path) -> None:
    first = ensure_dev_certificate(tmp_path / "a")
    second = ensure_dev_certificate(tmp_path / "b")
    with pytest.raises(CertificateError) as excinfo:
        load_server_context(first.cert_path, second.key_path)
    assert str(second.key_path) in str(excinfo.value)
    assert str(first.cert_path) in str(excinfo.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "malformed"),
    ],
)
def test_unusable_certificate_file_is_reported(
    tmp_path: Path, dev: DevCertificate, content: str, message: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text(content)
    with pytest.raises(CertificateError, match=message):
        load_server_context(bad, dev.key_path)


def test_missing_key_file_is_reported(tmp_path: Path, dev: DevCertificate) -> None:
    with pytest.raises(CertificateError, match="cannot read"):
        load_server_context(dev.cert_path, tmp_path / "missing.key")


def test_encrypted_key_is_refused_with_a_clear_message(tmp_path: Path, dev: DevCertificate) -> None:
    key = serialization.load_pem_private_key(dev.key_path.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match="encrypted"):
        load_server_context(dev.cert_path, encrypted)
