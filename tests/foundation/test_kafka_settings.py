"""Connection settings for an existing cluster: TLS (CA, verify), mutual TLS, SASL consistency,
and the one size every client derives from the topic settings.

The TLS context the clients get is exercised against a real TLS server on loopback that
requires a client certificate, not inspected attribute by attribute.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailferry.config import parse_config
from mailferry.config.kafka import KafkaConfig
from mailferry.config.types import SecretRef
from mailferry.errors import ConfigError
from mailferry.kafka.clients import common_settings, faust_settings, producer_settings, ssl_context
from mailferry_testkit.certs import make_test_pki


def _client_identity(folder: Path, key_password: bytes) -> tuple[Path, Path, Path]:
    """A client CA, and a client certificate it signed with an encrypted key: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailferry-client")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "client-ca.pem", folder / "client.pem", folder / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption = serialization.BestAvailableEncryption(key_password)
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return paths


class MutualTlsServer:
    """Accepts TLS connections on loopback that present a certificate of ``client_ca``."""

    def __init__(self, cert: Path, key: Path, client_ca: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(str(client_ca))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    subject = dict(x[0] for x in tls.getpeercert()["subject"])  # type: ignore[index]
                    self.peers.append(subject["commonName"])
            except (ssl.SSLError, OSError):
                pass

    def handshake(self, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.do_handshake()

    def close(self) -> None:
        self.sock.close()


def test_mutual_tls_verifies_the_broker_and_presents_the_client_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_test_pki(tmp_path / "server")
    client_ca, client_cert, client_key = _client_identity(tmp_path, b"key-passphrase")
    monkeypatch.setenv("MF_TEST_KEY_PASSWORD", "key-passphrase")
    server = MutualTlsServer(pki.cert_file, pki.key_file, client_ca)
    kafka = KafkaConfig(
        bootstrap_servers=[f"127.0.0.1:{server.port}"],
        security_protocol="SSL",
        ssl_cafile=pki.ca_file,
        ssl_certfile=client_cert,
        ssl_keyfile=client_key,
        ssl_key_password=SecretRef("env:MF_TEST_KEY_PASSWORD"),
    )
    try:
        server.handshake(ssl_context(kafka))
        system_cas_only = kafka.model_copy(update={"ssl_cafile": None})
        with pytest.raises(ssl.SSLCertVerificationError):
            server.handshake(ssl_context(system_cas_only))
        server.handshake(ssl_context(system_cas_only.model_copy(update={"ssl_verify": False})))
    finally:
        server.close()
    assert server.peers[0] == "mailferry-client"
    settings = common_settings(kafka, list(kafka.bootstrap_servers))
    assert isinstance(settings["ssl_context"], ssl.SSLContext)  # kafka-python and aiokafka get it
    assert "ssl_cafile" not in settings


@pytest.mark.parametrize(
    ("kafka", "problem"),
    [
        ('ssl_cafile = "/etc/ca.pem"\n', "ssl_cafile need security_protocol SSL or SASL_SSL"),
        ('security_protocol = "SSL"\nssl_keyfile = "/k.pem"\n', "need ssl_certfile"),
    ],
)
def test_inconsistent_tls_settings_are_refused_with_their_line(kafka: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('allow_plaintext_secrets = true\n[kafka]\nbootstrap_servers = ["k:9093"]\n' + kafka)
    assert problem in str(info.value) and "<config>:" in str(info.value) and "kafka" in str(info.value)


def test_the_connection_table_round_trips_and_never_writes_a_clear_text_secret() -> None:
    kafka = KafkaConfig(
        bootstrap_servers=["k1:9093", "k2:9093"],
        topic_prefix="prod",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mailferry",
        sasl_password=SecretRef("file:/etc/mailferry/kafka.password"),
        ssl_cafile=Path("/etc/mailferry/ca.pem"),
        ssl_verify=False,
    )
    assert parse_config(kafka.connection_toml(), check_secrets=False).kafka == kafka
    clear = kafka.model_copy(update={"sasl_password": SecretRef.plaintext("hunter2")})
    with pytest.raises(ValueError, match="clear-text secret"):
        clear.connection_toml()


def test_every_client_size_follows_the_largest_topic_setting() -> None:
    config = parse_config(
        '[kafka.topics.defaults]\nmax_message_bytes = "2MiB"\n'
        '[kafka.topics.overrides.raw]\nmax_message_bytes = "24MiB"\n'
    )
    servers = ["127.0.0.1:9092"]
    assert producer_settings(config.kafka, servers)["max_request_size"] == 24 * 1024 * 1024
    faust = faust_settings(config.kafka, servers)
    assert faust["producer_max_request_size"] == faust["consumer_max_fetch_size"] == 24 * 1024 * 1024
