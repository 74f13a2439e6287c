"""ZeroMQ CURVE for use across machines: encrypted sockets, and only allowed clients.

Key files are zmq.auth certificates (`rtseg keys` writes them): NAME.key holds a public
key, NAME.key_secret the public and the secret key. The server (publisher and control
socket) uses its .key_secret; a ZAP authenticator thread accepts a client only if its
public key is one of the .key files in the authorized-clients folder. Clients use their own
.key_secret and the server's public .key. Without CURVE rtseg binds to 127.0.0.1 only.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

if TYPE_CHECKING:
    from rtseg.config import SecurityConfig

log = logging.getLogger(__name__)


class CurveKeyError(ValueError):
    """A key file or folder that cannot be used; the message names it and says what to do."""


def load_key_pair(path: str | Path, *, need_secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) from a zmq.auth certificate file; secret is None for a .key file."""
    path = Path(path)
    hint = "generate keys with `rtseg keys DIR --name NAME`"
    if not path.exists():
        raise CurveKeyError(f"CURVE key file {path} does not exist; {hint}")
    if not path.is_file():
        raise CurveKeyError(f"CURVE key file {path} is not a file; {hint}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as e:
        raise CurveKeyError(f"CURVE key file {path} cannot be read ({e.strerror}); check its owner and mode") from None
    except ValueError as e:
        raise CurveKeyError(f"CURVE key file {path} is not a zmq certificate ({e}); {hint}") from None
    if need_secret and secret is None:
        raise CurveKeyError(f"{path} holds only a public key; give the .key_secret file of the pair")
    if secret is not None and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key %s is readable by other users; run: chmod 600 %s", path, path)
    return public, secret


def authorized_keys(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CurveKeyError(f"authorized clients folder {folder} does not exist; create it and copy each "
                            f"client's public NAME.key into it")
    return sorted(folder.glob("*.key"))


class CurveServer:
    """Server-side CURVE for one zmq.Context: the server key pair plus a running ZAP
    authenticator that admits only the clients in `authorized_clients`. Sockets made with
    `secure(socket)` must belong to `self.context`."""

    def __init__(self, secret_key_file: str | Path, authorized_clients: str | Path,
                 context: zmq.Context | None = None):
        self.public_key, secret = load_key_pair(secret_key_file, need_secret=True)
        self._secret_key: bytes = secret  # type: ignore[assignment]
        self.authorized_clients = Path(authorized_clients)
        authorized_keys(self.authorized_clients)  # fail before any thread starts
        self.context = context or zmq.Context.instance()
        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger("rtseg.security.zap"))
        self._auth.start()
        try:
            self.reload()
        except BaseException:
            self._auth.stop()
            raise

    @classmethod
    def from_config(cls, security: SecurityConfig, context: zmq.Context | None = None) -> CurveServer | None:
        """None when security.curve is off."""
        if not security.curve:
            return None
        return cls(security.server_secret_key, security.authorized_clients, context)  # type: ignore[arg-type]

    def reload(self) -> int:
        """Re-read the authorized-clients folder (after adding or removing a key); returns how
        many client keys are allowed."""
        keys = authorized_keys(self.authorized_clients)
        if not keys:
            log.warning("no client keys in %s: every client will be refused", self.authorized_clients)
        self._auth.configure_curve(domain="*", location=str(self.authorized_clients))
        log.info("CURVE: %d authorized client key file(s) in %s", len(keys), self.authorized_clients)
        return len(keys)

    def secure(self, socket: zmq.Socket) -> None:
        """Make `socket` a CURVE server (call before bind)."""
        socket.curve_server = True
        socket.curve_publickey = self.public_key
        socket.curve_secretkey = self._secret_key

    def stop(self) -> None:
        self._auth.stop()

    def __enter__(self) -> CurveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind_server_socket(kind: int, endpoint: str, *, curve: CurveServer | None, context: zmq.Context | None,
                       what: str, config_key: str, options: dict[int, int] | None = None) -> tuple[zmq.Socket, str]:
    """A socket of `kind` bound at `endpoint` (CURVE server when `curve` is given), with
    `options` set before the bind; returns it and the endpoint really bound (for ":*" ports).
    A bind failure is an OSError that names the endpoint and the config key to change."""
    if curve is not None and context is not None and context is not curve.context:
        raise ValueError(f"the {what} must live in the CurveServer's context (its ZAP authenticator "
                         "serves that context only): pass context=None or curve.context")
    ctx = curve.context if curve is not None else (context or zmq.Context.instance())
    sock = ctx.socket(kind)
    sock.linger = 0
    for option, value in (options or {}).items():
        sock.setsockopt(option, value)
    if curve is not None:
        curve.secure(sock)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        sock.close()
        raise OSError(f"cannot bind the {what} to {endpoint!r}: {e}; is another rtseg running? "
                      f"choose another {config_key} endpoint") from None
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


@dataclass(frozen=True, repr=False)
class CurveClient:
    """Client-side CURVE: this client's key pair and the server's public key."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes

    @classmethod
    def from_files(cls, client_secret_file: str | Path, server_public_file: str | Path) -> CurveClient:
        public, secret = load_key_pair(client_secret_file, need_secret=True)
        server, _ = load_key_pair(server_public_file, need_secret=False)
        return cls(public, secret, server)  # type: ignore[arg-type]

    @classmethod
    def from_options(cls, client_key: str | Path | None, server_key: str | Path | None) -> CurveClient | None:
        """The client of `--client-key` / `--server-key` (or viewer.client_key / server_key): None
        when neither is given; CurveKeyError when only one is, or a file cannot be used."""
        if client_key is None and server_key is None:
            return None
        if client_key is None or server_key is None:
            raise CurveKeyError("CURVE needs both this client's secret key (--client-key NAME.key_secret) and the "
                                f"server's public key (--server-key server.key); got client key {client_key}, "
                                f"server key {server_key}")
        return cls.from_files(client_key, server_key)

    def secure(self, socket: zmq.Socket) -> None:
        """Make `socket` a CURVE client (call before connect)."""
        socket.curve_publickey = self.public_key
        socket.curve_secretkey = self.secret_key
        socket.curve_serverkey = self.server_key

    def __repr__(self) -> str:  # never print the secret
        return f"CurveClient(public_key={self.public_key.decode()!r})"


def create_key_pair(out_dir: str | Path, name: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (mode 600) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    public, secret = out_dir / f"{name}.key", out_dir / f"{name}.key_secret"
    existing = [str(p) for p in (public, secret) if p.exists()]
    if existing and not overwrite:
        raise CurveKeyError(f"{', '.join(existing)} already exist(s); pick another --name or pass --force")
    old_umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(out_dir, name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def pipeline_client(security: SecurityConfig) -> CurveClient | None:
    """The CURVE client identity of the pipeline's own subscribers (recorder, viewer): None when
    CURVE is off. With CURVE on and no `security.client_secret_key`, CurveKeyError says what to set."""
    if not security.curve:
        return None
    if security.client_secret_key is None:
        raise CurveKeyError("security.curve is on but security.client_secret_key is not set: the pipeline's "
                            "recorder/viewer need a client key pair (`rtseg keys DIR --name pipeline`; copy "
                            "its public .key into authorized_clients)")
    return CurveClient.from_files(security.client_secret_key, security.server_secret_key)  # type: ignore[arg-type]
