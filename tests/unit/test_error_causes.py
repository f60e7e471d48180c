"""One-line errors keep the library's cause: the wording functions on real exception objects, chained as
Ray 2.60, requests and SQLAlchemy raise them (a refused Ray token, a TLS certificate refused in a real
handshake, a login or database PostgreSQL refuses)."""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import ssl
import traceback
from pathlib import Path

import psycopg
import pytest
import requests
import sqlalchemy
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ray._private.authentication.authentication_constants import (
    TOKEN_AUTH_ENABLED_BUT_NO_TOKEN_FOUND_ERROR_MESSAGE,
)
from ray.exceptions import AuthenticationError

from deploy.local_serving import free_port
from flow_steps.orchestration.cluster import join_problem, ray_cause
from flow_steps.runtime.tracking import (
    CERT_VARIABLE,
    TRACKING_URI_VARIABLE,
    error_chain,
    tls_problem,
    unhealthy,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ADDRESS = "10.0.0.5:6379"
TOKEN = "f3a1c9e07b5d4c2a9e8f7d6c5b4a3928"
# What the cluster's GCS answers a missing or wrong token (Ray 2.60, captured from a real refusal).
GCS_REFUSAL = "RPC error: InvalidAuthToken: Authentication token is missing or incorrect"


def ray_join_error(inner: BaseException) -> ConnectionError:
    """The exception `ray.init(address=...)` raises when its GCS client failed with `inner`: Ray 2.60's
    node.py puts the last traceback in a RuntimeError's message, worker.py chains a ConnectionError."""
    try:
        raise inner
    except type(inner):
        last = traceback.format_exc()
    runtime = RuntimeError(f"Failed to connect to GCS. Last connection error: {last}")
    try:
        try:
            raise runtime
        except RuntimeError as error:
            raise ConnectionError(f"Failed to connect to Ray cluster at {ADDRESS}") from error
    except ConnectionError as joined:
        return joined


@pytest.fixture(autouse=True)
def no_ray_auth(monkeypatch):
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_a_cluster_that_wants_a_token_names_both_variables_and_keeps_rays_words():
    line = join_problem(ADDRESS, ray_cause(ray_join_error(AuthenticationError(GCS_REFUSAL))))

    assert line.startswith(
        f"cannot join the Ray cluster at RAY_ADDRESS={ADDRESS}: the cluster requires a token"
    )
    assert "(Ray: authentication token is missing or incorrect)" in line
    assert "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token" in line
    assert "\n" not in line and "Traceback" not in line


def test_a_refused_token_is_named_and_never_shown(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    cause = ray_cause(ray_join_error(AuthenticationError(f"{GCS_REFUSAL} (sent {TOKEN})")))

    line = join_problem(ADDRESS, cause)

    assert "the cluster refused this client's token (Ray: authentication token is missing" in line
    assert line.endswith("set RAY_AUTH_TOKEN to the cluster's token")
    assert TOKEN not in line


def test_token_mode_without_a_token_names_where_ray_looks(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    # ray.init raises this one itself, unchained, before it connects
    line = join_problem(
        ADDRESS, ray_cause(AuthenticationError(TOKEN_AUTH_ENABLED_BUT_NO_TOKEN_FOUND_ERROR_MESSAGE))
    )

    assert "RAY_AUTH_MODE=token but Ray found no token: set RAY_AUTH_TOKEN" in line
    assert "RAY_AUTH_TOKEN_PATH" in line


def test_an_unreadable_token_file_is_named(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/nowhere/token")
    error = AuthenticationError(
        "RAY_AUTH_TOKEN_PATH is set but file cannot be opened or is empty: /nowhere/token"
    )

    line = join_problem(ADDRESS, ray_cause(error))

    assert "RAY_AUTH_TOKEN_PATH=/nowhere/token cannot be read or is empty" in line


def test_any_other_cause_is_kept_in_one_line_instead_of_cut_away():
    error = ray_join_error(TimeoutError("Timed out while waiting for GCS to become available."))

    line = join_problem(ADDRESS, ray_cause(error))

    assert line.startswith(f"cannot join the Ray cluster at RAY_ADDRESS={ADDRESS}: Failed to connect")
    assert line.endswith("TimeoutError: Timed out while waiting for GCS to become available.")
    assert "\n" not in line and "Traceback" not in line


def certificate(folder: Path, host: str, days: tuple[int, int] = (-1, 30)) -> tuple[Path, Path]:
    """A self-signed certificate for `host`, valid from days[0] to days[1] from today: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{host}.pem", folder / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def refused_handshake(
    cert: tuple[Path, Path], trusted: Path | None, host: str
) -> requests.exceptions.SSLError:
    """A real TLS handshake in memory (no socket) that the client refuses, wrapped as requests raises
    it: SSLError(MaxRetryError(reason=urllib3 SSLError(ssl.SSLCertVerificationError)))."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*cert)
    client_context = ssl.create_default_context(cafile=str(trusted) if trusted else None)
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=host)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    try:
        for _ in range(10):
            for side, outgoing, incoming in (
                (client, client_out, server_in),
                (server, server_out, client_in),
            ):
                with contextlib.suppress(ssl.SSLWantReadError):  # until the other side answers
                    side.do_handshake()
                incoming.write(outgoing.read())
    except ssl.SSLCertVerificationError as refused:
        reason = urllib3.exceptions.SSLError(refused)
        return requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(None, "/health", reason=reason))
    raise AssertionError("the handshake was not refused")


def test_an_untrusted_certificate_keeps_opensslss_reason_and_names_the_variable(tmp_path):
    error = refused_handshake(certificate(tmp_path, "tracking.example"), None, "tracking.example")
    assert any(isinstance(item, ssl.SSLCertVerificationError) for item in error_chain(error))

    line = tls_problem("https://tracking.example", error)

    assert "presented a certificate that this machine does not trust (self-signed certificate)" in line
    assert f"set {CERT_VARIABLE} to the server's certificate or its CA's" in line


def test_a_certificate_for_another_host_names_the_tracking_uri(tmp_path):
    cert = certificate(tmp_path, "tracking.example")
    error = refused_handshake(cert, cert[0], "127.0.0.1")

    line = tls_problem("https://127.0.0.1:5000", error)

    assert "a certificate for another host (IP address mismatch" in line
    assert f"put a host name the certificate names in {TRACKING_URI_VARIABLE}" in line


def test_an_expired_certificate_says_so(tmp_path):
    cert = certificate(tmp_path, "tracking.example", days=(-30, -1))
    error = refused_handshake(cert, cert[0], "tracking.example")

    line = tls_problem("https://tracking.example", error)

    assert "a certificate that is not valid now (certificate has expired): renew it" in line


def team_server_module():
    """deploy/team_server.py, a script outside the package, imported from its file."""
    spec = importlib.util.spec_from_file_location("team_server", DEPLOY / "team_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused_by_postgres(message: str) -> sqlalchemy.exc.OperationalError:
    """SQLAlchemy's error around psycopg's, as `engine.connect()` raises it; `message` is what libpq
    said (captured from a real PostgreSQL 15 refusal)."""
    prefix = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    original = psycopg.OperationalError(prefix + message)
    return sqlalchemy.exc.OperationalError(None, None, original)


@pytest.mark.parametrize(
    ("message", "fragments"),
    [
        (
            'FATAL:  password authentication failed for user "mlflow"',
            ['(FATAL: password authentication failed for user "mlflow")', "set PGPASSWORD (or ~/.pgpass)"],
        ),
        ("fe_sendauth: no password supplied", ["(fe_sendauth: no password supplied)", "set PGPASSWORD"]),
        (
            'FATAL:  database "mlflow" does not exist',
            ['(FATAL: database "mlflow" does not exist)', "create it (createdb)", "in --database-uri"],
        ),
        ('FATAL:  role "mlfow" does not exist', ["name an existing user in --database-uri"]),
    ],
)
def test_a_database_postgresql_refuses_is_named_with_its_reason(message, fragments):
    uri = "postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow"

    line = team_server_module().database_problem("--database-uri", uri, refused_by_postgres(message))

    assert line.startswith(f"PostgreSQL refused --database-uri {uri} (")
    for fragment in fragments:
        assert fragment in line
    assert "\n" not in line and "sqlalche.me" not in line


def test_a_database_that_does_not_answer_keeps_libpqs_reason():
    try:  # a real refusal: nothing listens on that port
        psycopg.connect(f"host=127.0.0.1 port={free_port()} user=mlflow dbname=mlflow connect_timeout=5")
    except psycopg.OperationalError as original:
        error = sqlalchemy.exc.OperationalError(None, None, original)
    uri = "postgresql+psycopg://mlflow@127.0.0.1:1/mlflow"

    line = team_server_module().database_problem("--database-uri", uri, error)

    assert line.startswith(f"cannot reach the database of --database-uri {uri}: ")
    assert "Connection refused" in line


def server_answer(status: int, body: str) -> requests.Response:
    """A `requests` response as the tracking server sent it."""
    answer = requests.Response()
    answer.status_code, answer._content = status, body.encode()
    answer.headers["Content-Type"] = "application/json"
    return answer


def test_a_server_whose_database_refuses_it_says_so_with_postgresqls_reason():
    # What MLflow 3.17's server answered once its database user's password had changed (captured)
    message = (
        '(psycopg.OperationalError) connection failed: connection to server at "127.0.0.1", port 39599 '
        'failed: FATAL:  password authentication failed for user "mlflow"\n(Background on this error at: '
        "https://sqlalche.me/e/21/e3q8)"
    )
    body = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message})

    line = unhealthy("http://tracking.example:5000", server_answer(503, body))

    assert line == (
        "the tracking server at http://tracking.example:5000 answered 503: its database refused it "
        '(FATAL: password authentication failed for user "mlflow"): the server\'s admin fixes its '
        "PGPASSWORD (or ~/.pgpass) (docs/team-server.md)"
    )


def test_any_other_server_error_stays_short():
    answer = server_answer(500, "<html>Internal Server Error</html>")

    assert unhealthy("http://tracking.example", answer) == (
        "the tracking server at http://tracking.example answered 500: it is not healthy"
    )
