"""TLS end to end: a self-signed CA and a certificate made here, `cluster up --tls-*`, then
`status`, a computation through a TLS client, a plain-TCP client refused, the
dashboard pages still served, and `down`."""

from __future__ import annotations

import datetime
import ipaddress
import json

import pytest

from tests.cluster.helpers import alive, daskflow, fetch, process_tree

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def write_ca_and_certificate(directory):
    """A CA, and a certificate it signs for 127.0.0.1/localhost usable as server and client."""
    x509 = pytest.importorskip("cryptography.x509", reason="TLS test needs the 'cryptography' package (test extra)")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "daskflow test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_tls_cluster_end_to_end(tmp_path, monkeypatch):
    certs = write_ca_and_certificate(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    result = daskflow(
        home, "cluster", "up", "--workers", "1", "--scheduler-port", "0", "--dashboard-port", "0",
        "--tls-ca-file", str(certs["ca"]), "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]), "--json",
    )  # fmt: skip
    info = json.loads(result.stdout.strip().splitlines()[-1])
    tree = process_tree([info["pids"]["scheduler"], *info["pids"]["workers"]])
    try:
        address = info["scheduler_address"]
        assert address.startswith("tls://127.0.0.1:")
        assert info["tls"] == {"ca_file": str(certs["ca"]), "cert": str(certs["cert"]), "key": str(certs["key"])}

        status = json.loads(daskflow(home, "cluster", "status", "--json").stdout)  # TLS from the cluster file
        assert status["n_workers"] == 1 and status["scheduler_address"] == address

        import dask.config
        from distributed import Client

        from daskflow import connection

        monkeypatch.setenv("DASKFLOW_HOME", str(home))
        with dask.config.set({"daskflow.home": str(home)}):
            security = connection.security_for(address)
            assert security is not None and security.require_encryption
            with connection.connect(None, timeout=20, set_as_default=False) as client:
                assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
                assert all(w.startswith("tls://") for w in client.scheduler_info(n_workers=-1)["workers"])
            with pytest.raises((OSError, TimeoutError)):
                Client(address.replace("tls://", "tcp://"), timeout=1, set_as_default=False)

        assert fetch(info["dashboard_link"].rsplit("/", 1)[0] + "/daskflow/")[0] == 200
    finally:
        daskflow(home, "cluster", "down", "--grace", "5", check=False)
    assert alive(tree) == []


def test_tls_options_must_come_together(tmp_path):
    result = daskflow(tmp_path, "cluster", "up", "--tls-ca-file", str(tmp_path / "ca.pem"), check=False)
    assert result.returncode != 0
    assert "--tls-cert" in result.stderr and "--tls-key" in result.stderr
