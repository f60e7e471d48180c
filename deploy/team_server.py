"""Start the team's MLflow tracking server: PostgreSQL backend, proxied artifacts, basic-auth logins.

    export PGPASSWORD=...                        # the database user's password (never on the command line)
    export MLFLOW_AUTH_ADMIN_PASSWORD=...        # the password of the server's admin user
    export MLFLOW_FLASK_SERVER_SECRET_KEY=...    # any long random string, the same across restarts
    python deploy/team_server.py --database-uri postgresql+psycopg://mlflow@db.example:5432/mlflow \\
        --artifacts-destination /srv/mlflow/artifacts --host 0.0.0.0 --port 5000

Runs `mlflow server` in the foreground with:
- `--backend-store-uri` the given database (runs, metrics, the Model Registry) and `--auth-database-uri`
  users and permissions (by default a database named `<database>_auth` on the same server);
- `--artifacts-destination` where artifacts are stored, served through the server itself (clients log
  and read `mlflow-artifacts:/` URIs and never need access to the storage); an `s3://bucket/prefix` there
  (with boto3 and AWS credentials on the server) swaps the local directory for object storage;
- MLflow's server job runner off (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false` unless set): the pipeline
  submits no server jobs, and the runner's ten worker processes would only cost memory and CPU;
- uvicorn's HTTP protocol with TCP_NODELAY on every connection (`nodelay_http.py`): with `--workers`
  above 1, uvicorn's own leaves Nagle's algorithm on and each keep-alive request waits about 40 ms;
- every statement of its database sessions planned with its values (`plan_cache_mode=force_custom_plan`
  added to PGOPTIONS): a generic plan cannot use our partial indexes (CUSTOM_PLANS below);
- `--app-name basic-auth`, configured by an ini file written to a private temporary file (mode 0600)
  from the environment: the admin password never appears in the repository or in a command line.

With `--tls-certfile FILE --tls-keyfile FILE` the server speaks HTTPS only (uvicorn's own TLS); clients
trust it through the system's CAs (a real certificate) or MLFLOW_TRACKING_SERVER_CERT_PATH (a private CA
or a self-signed certificate, for a trial: docs/team-server.md). A TLS proxy in front does the same.

MLflow opens its SQLAlchemy engines (runs and users) with `pool_pre_ping=True`: a pooled connection
that a PostgreSQL restart broke is tested and replaced before it is used, so the server rides out a
database restart with no setting here (tests/integration/test_outages.py restarts it under a pipeline).

The PostgreSQL driver is psycopg 3 (`postgresql+psycopg://`); the database passwords come from
PGPASSWORD (or ~/.pgpass), which libpq reads itself, so they are never part of a URI either.
`--upgrade` runs `mlflow db upgrade` on the database first (after an MLflow upgrade).

`--create-indexes` adds the indexes of deploy/indexes.py (named flow_steps_..., idempotent, built without
blocking writes) before the server starts, after `mlflow db upgrade` when the database has no tables yet;
`--show-indexes` lists them and `--drop-indexes` drops them (only ours), each without starting the server.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ADMIN_PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_VARIABLE = "MLFLOW_FLASK_SERVER_SECRET_KEY"
REQUIRED_VARIABLES = (ADMIN_PASSWORD_VARIABLE, SECRET_KEY_VARIABLE)
# MLflow 3's server job runner (GenAI scorers, trace roll-ups) starts about ten worker processes; the
# pipeline submits no jobs, so it is off unless the environment turns it on.
SERVER_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
DEPLOY_FOLDER = Path(__file__).resolve().parent
NODELAY_PROTOCOL = "nodelay_http:NoDelayH11Protocol"  # uvicorn's --http value (see nodelay_http.py)
# Every statement of the server's database sessions planned with its own values (PGOPTIONS: libpq sends it
# at connect). psycopg 3 prepares a statement it has run 5 times on a connection, and PostgreSQL may then
# keep one generic plan for it, made without the values: MLflow binds a tag's key as a parameter, so that
# plan cannot use an index limited to some keys (deploy/indexes.py) and reads every row of the key, on
# every call, for as long as the pooled connection lives (docs/performance.md, "History").
CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"


def auth_config(
    admin_username: str,
    admin_password: str,
    database_uri: str,
    default_permission: str,
    auth_cache_seconds: int,
) -> str:
    """The basic-auth app's ini file (read through MLFLOW_AUTH_CONFIG_PATH)."""
    return (
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin_username}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {auth_cache_seconds}\n"
    )


def auth_database_uri(database_uri: str) -> str:
    """`postgresql+psycopg://user@host:port/mlflow` -> the same server's `mlflow_auth` database."""
    base, _, name = database_uri.rpartition("/")
    return f"{base}/{name.split('?')[0]}_auth"


def server_command(arguments: argparse.Namespace) -> list[str]:
    """The `mlflow server` command line (no secrets in it)."""
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
    command += ["--backend-store-uri", arguments.database_uri]
    command += ["--artifacts-destination", arguments.artifacts_destination, "--serve-artifacts"]
    command += ["--host", arguments.host, "--port", str(arguments.port), "--workers", str(arguments.workers)]
    uvicorn_options = ["--http", NODELAY_PROTOCOL]  # nodelay_http.py: 40 ms a request otherwise
    if arguments.tls_certfile:
        files = (("--ssl-certfile", arguments.tls_certfile), ("--ssl-keyfile", arguments.tls_keyfile))
        uvicorn_options += [item for flag, path in files for item in (flag, path)]
    return [*command, "--uvicorn-opts", shlex.join(uvicorn_options)]


def server_env(auth_config_path: str) -> dict[str, str]:
    """The server's environment: this one without the admin password (the ini file has it), the auth
    config, SERVER_DEFAULTS unless set, CUSTOM_PLANS added to PGOPTIONS, and this folder importable (for
    nodelay_http)."""
    env = {**SERVER_DEFAULTS, **os.environ, "MLFLOW_AUTH_CONFIG_PATH": auth_config_path}
    env.pop(ADMIN_PASSWORD_VARIABLE, None)
    env["PGOPTIONS"] = " ".join(filter(None, [env.get("PGOPTIONS"), CUSTOM_PLANS]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DEPLOY_FOLDER), env.get("PYTHONPATH")]))
    return env


def tls_problem(certfile: str | None, keyfile: str | None) -> str | None:
    """Why the TLS options cannot serve HTTPS (one line), or None when they can (or are both absent)."""
    if bool(certfile) != bool(keyfile):
        return "give --tls-certfile and --tls-keyfile together"
    for flag, path in (("--tls-certfile", certfile), ("--tls-keyfile", keyfile)):
        if path and not os.access(path, os.R_OK):
            return f"{flag} {path} is not a readable file"
    return None


def database_problem(option: str, uri: str, error: BaseException) -> str:
    """One line for a database PostgreSQL refused (SQLAlchemy's error around psycopg's): its own reason
    (`FATAL: password authentication failed ...`, `database "x" does not exist`) and what to fix."""
    original = getattr(error, "orig", None) or error.__cause__ or error
    text = " ".join(str(original).split())
    reason = text.rsplit("failed: ", 1)[-1] if "failed: " in text else text
    where = f"PostgreSQL refused {option} {uri}"
    if "password authentication failed" in reason or "no password supplied" in reason:
        return f"{where} ({reason}): set PGPASSWORD (or ~/.pgpass) to that user's password"
    if "database" in reason and "does not exist" in reason:
        return f"{where} ({reason}): create it (createdb) or name an existing one in {option}"
    if "role" in reason and "does not exist" in reason:
        return f"{where} ({reason}): name an existing user in {option}"
    return f"cannot reach the database of {option} {uri}: {reason}"


def check_database(option: str, uri: str) -> None:
    """Connect once: a login or database PostgreSQL refuses ends here in one line, not in the server's
    retries of the same traceback."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10})
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as error:
        raise SystemExit(f"team_server: {database_problem(option, uri, error)}") from None
    finally:
        engine.dispose()


def indexes_module():
    """deploy/indexes.py, imported when an index option asks for it (it imports MLflow's names). The
    project is installed (pre_requirements.txt's `-e .`), so its `deploy` package imports from anywhere."""
    from deploy import indexes

    return indexes


def manage_indexes(arguments: argparse.Namespace) -> int:
    """--show-indexes / --drop-indexes: print ours (name and definition) or drop them; the exit status."""
    if "@" in arguments.database_uri and ":" in arguments.database_uri.split("//", 1)[-1].split("@")[0]:
        raise SystemExit("team_server: put the database password in PGPASSWORD, not in --database-uri")
    check_database("--database-uri", arguments.database_uri)
    indexes = indexes_module()
    try:
        if arguments.drop_indexes:
            for name in indexes.drop_indexes(arguments.database_uri):
                print(f"dropped {name}")
        for name, definition in indexes.show_indexes(arguments.database_uri):
            print(f"{name}: {definition}")
    except Exception as error:  # psycopg's: no privilege, a lock timeout
        raise SystemExit(f"team_server: {' '.join(str(error).split())}") from None
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-uri", required=True, help="postgresql+psycopg://USER@HOST:PORT/DB")
    parser.add_argument("--auth-database-uri", help="users and permissions (default: <database>_auth)")
    parser.add_argument(
        "--artifacts-destination", help="a directory, or s3://bucket/prefix (required to start)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--admin-username", default="admin")
    parser.add_argument(
        "--default-permission",
        default="READ",
        choices=["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"],
        help="what a user may do on resources others created, until given more",
    )
    parser.add_argument(
        "--auth-cache-seconds",
        type=int,
        default=60,
        help="how long a worker trusts a verified login before hashing the password again (0: never)",
    )
    parser.add_argument("--tls-certfile", help="PEM certificate (chain): serve HTTPS only")
    parser.add_argument("--tls-keyfile", help="PEM private key of --tls-certfile")
    parser.add_argument("--upgrade", action="store_true", help="run `mlflow db upgrade` first")
    parser.add_argument(
        "--create-indexes", action="store_true", help="add our indexes first (docs/team-server.md)"
    )
    parser.add_argument("--show-indexes", action="store_true", help="list our indexes and exit")
    parser.add_argument("--drop-indexes", action="store_true", help="drop our indexes (only ours) and exit")
    arguments = parser.parse_args()
    if arguments.show_indexes or arguments.drop_indexes:
        raise SystemExit(manage_indexes(arguments))
    if not arguments.artifacts_destination:
        raise SystemExit("team_server: give --artifacts-destination (a directory, or s3://bucket/prefix)")
    if problem := tls_problem(arguments.tls_certfile, arguments.tls_keyfile):
        raise SystemExit(f"team_server: {problem}")
    missing = [name for name in REQUIRED_VARIABLES if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"team_server: set {' and '.join(missing)} (see docs/team-server.md)")
    if "@" in arguments.database_uri and ":" in arguments.database_uri.split("//", 1)[-1].split("@")[0]:
        raise SystemExit("team_server: put the database password in PGPASSWORD, not in --database-uri")
    auth_uri = arguments.auth_database_uri or auth_database_uri(arguments.database_uri)
    if arguments.database_uri.startswith("postgresql"):
        check_database("--database-uri", arguments.database_uri)
        check_database("--auth-database-uri", auth_uri)  # by default the same server's <database>_auth

    indexes = indexes_module() if arguments.create_indexes else None
    if arguments.upgrade or (indexes and not indexes.tables_exist(arguments.database_uri)):
        subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", arguments.database_uri], check=True)
    if indexes:
        try:
            indexes.create_indexes(arguments.database_uri)
        except Exception as error:  # psycopg's: a lock timeout, no privilege, a disk full
            raise SystemExit(
                f"team_server: cannot create the indexes: {' '.join(str(error).split())}"
            ) from None
    with tempfile.NamedTemporaryFile("w", suffix=".ini", prefix="mlflow-auth-", delete=False) as handle:
        os.chmod(handle.name, 0o600)
        handle.write(
            auth_config(
                arguments.admin_username,
                os.environ[ADMIN_PASSWORD_VARIABLE],
                auth_uri,
                arguments.default_permission,
                arguments.auth_cache_seconds,
            )
        )
    env = server_env(handle.name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the ini file is removed
    try:
        completed = subprocess.run(server_command(arguments), env=env, check=False)
        raise SystemExit(completed.returncode)
    finally:
        Path(handle.name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
