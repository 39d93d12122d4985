"""X.509 certificates for the mTLS tests, made with ``cryptography``: a CA, a server
certificate for 127.0.0.1 and client certificates it signs, and PEM files of them."""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "client_certificate", "pem"]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _build(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    server_ip: str | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server_ip is not None:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@functools.lru_cache(maxsize=16)
def client_certificate(common_name: str) -> x509.Certificate:
    """A self-signed client certificate (for tests where no TLS handshake checks it)."""
    return _build(common_name, ec.generate_private_key(ec.SECP256R1()), client=True)


@dataclass
class Pki:
    """A CA, a server certificate for 127.0.0.1, and client certificates, as PEM files."""

    directory: Path

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _build("jwt_guard test CA", self.ca_key, ca=True)
        self.ca_file = self._write("ca.pem", pem(self.ca).encode())
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _build(
            "127.0.0.1", server_key, (self.ca.subject, self.ca_key), server_ip="127.0.0.1"
        )
        self.server_cert_file = self._write("server.pem", pem(server).encode())
        self.server_key_file = self._write("server-key.pem", _key_pem(server_key))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def client(
        self, common_name: str, *, signed_by_ca: bool = True
    ) -> tuple[x509.Certificate, Path, Path]:
        """A client certificate (signed by the CA, or self-signed) and its cert and key files."""
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = (self.ca.subject, self.ca_key) if signed_by_ca else None
        cert = _build(common_name, key, issuer, client=True)
        return (
            cert,
            self._write(f"{common_name}.pem", pem(cert).encode()),
            self._write(f"{common_name}-key.pem", _key_pem(key)),
        )
