"""CURVE on real sockets: only clients whose public key is in the authorized folder can
subscribe or prompt; everyone else gets nothing and changes nothing. And `rtseg keys`."""
from __future__ import annotations

import logging
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq
from zmq.auth.thread import AuthenticationThread

from rtseg.cli import main as rtseg_main
from rtseg.client import Controller, ControlTimeout, Masks, Subscriber
from rtseg.config import SecurityConfig
from rtseg.pipeline.control import ControlServer
from rtseg.pipeline.publisher import Publisher
from rtseg.security import CurveClient, CurveKeyError, CurveServer, create_key_pair
from tests.helpers.control import FakeHandler, serving
from tests.helpers.publishing import masks_message


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "keys"
    server_public, server_secret = create_key_pair(d, "server")
    _, ok_secret = create_key_pair(d, "client-ok")
    stranger_public, stranger_secret = create_key_pair(d, "client-stranger")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "client-ok.key").write_bytes((d / "client-ok.key").read_bytes())
    return {"server_public": server_public, "server_secret": server_secret, "ok_secret": ok_secret,
            "stranger_public": stranger_public, "stranger_secret": stranger_secret, "authorized": authorized}


class PublishingThread:
    """Publishes a small masks message every 10 ms (the publisher is used by this thread only)."""

    def __init__(self, pub: Publisher):
        self.pub, self.stop = pub, threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.01):
            self.pub.publish(masks_message("cam"))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.pub.close()


def gets_masks(sub: Subscriber, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if isinstance(sub.recv(timeout=0.1), Masks):
            return True
    return False


def test_only_authorized_clients_subscribe_and_prompt(ctx, keys):
    handler = FakeHandler()
    with CurveServer(keys["server_secret"], keys["authorized"], ctx) as curve, \
            serving(handler, ctx, curve=curve) as control:
        publishing = PublishingThread(Publisher("tcp://127.0.0.1:*", curve=curve))
        endpoint = publishing.pub.endpoint
        good = CurveClient.from_files(keys["ok_secret"], keys["server_public"])
        stranger = CurveClient.from_files(keys["stranger_secret"], keys["server_public"])
        impostor = CurveClient(good.public_key, good.secret_key, stranger.public_key)  # wrong server key
        subscribers = {
            "authorized": Subscriber(endpoint, curve=good, context=ctx),
            "stranger": Subscriber(endpoint, curve=stranger, context=ctx),
            "plain": Subscriber(endpoint, context=ctx),
            "impostor": Subscriber(endpoint, curve=impostor, context=ctx),
        }
        try:
            assert gets_masks(subscribers["authorized"], within=10)
            for name in ("stranger", "plain", "impostor"):
                assert not gets_masks(subscribers[name], within=0.7), f"{name} subscriber received masks"

            for client in (stranger, None, impostor):
                with Controller(control.endpoint, timeout=0.5, curve=client, context=ctx) as ctl:
                    with pytest.raises(ControlTimeout):
                        ctl.add_points("cam", 1, [[1, 1]])
            assert handler.calls == []  # no unauthenticated prompt was applied

            with Controller(control.endpoint, timeout=5, curve=good, context=ctx) as ctl:
                assert ctl.add_points("cam", 1, [[1, 1]])["ok"]
            assert [c.type for c in handler.calls] == ["add_points"]

            # a key added to the folder is admitted after reload(), on the client's next connection
            # (libzmq does not reconnect a socket whose handshake was refused)
            (keys["authorized"] / "client-stranger.key").write_bytes(keys["stranger_public"].read_bytes())
            assert curve.reload() == 2
            subscribers["stranger again"] = Subscriber(endpoint, curve=stranger, context=ctx)
            assert gets_masks(subscribers["stranger again"], within=10)
        finally:
            for sub in subscribers.values():
                sub.close()
            publishing.close()


def test_sockets_must_share_the_authenticators_context(ctx, keys):
    other = zmq.Context()
    with CurveServer(keys["server_secret"], keys["authorized"], ctx) as curve:
        with pytest.raises(ValueError, match="CurveServer's context"):
            Publisher("tcp://127.0.0.1:*", curve=curve, context=other)
        with pytest.raises(ValueError, match="CurveServer's context"):
            ControlServer("tcp://127.0.0.1:*", FakeHandler(), curve=curve, context=other)
    other.term()


def test_curve_server_from_config(ctx, keys):
    assert CurveServer.from_config(SecurityConfig(), ctx) is None
    cfg = SecurityConfig(curve=True, server_secret_key=keys["server_secret"], authorized_clients=keys["authorized"])
    with CurveServer.from_config(cfg, ctx) as curve:
        assert curve.public_key == zmq.auth.load_certificate(keys["server_public"])[0]


def test_key_errors_say_what_to_do(ctx, keys, tmp_path, caplog):
    with pytest.raises(CurveKeyError, match="does not exist; generate keys with `rtseg keys"):
        CurveClient.from_files(tmp_path / "missing.key_secret", keys["server_public"])
    with pytest.raises(CurveKeyError, match="holds only a public key"):
        CurveClient.from_files(keys["server_public"], keys["server_public"])
    (tmp_path / "junk.key_secret").write_text("not a certificate\n")
    with pytest.raises(CurveKeyError, match="not a zmq certificate"):
        CurveClient.from_files(tmp_path / "junk.key_secret", keys["server_public"])
    with pytest.raises(CurveKeyError, match="authorized clients folder .* does not exist"):
        CurveServer(keys["server_secret"], tmp_path / "nowhere", ctx)
    assert not [t for t in threading.enumerate() if isinstance(t, AuthenticationThread)]  # none left running
    keys["ok_secret"].chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="rtseg.security"):
        CurveClient.from_files(keys["ok_secret"], keys["server_public"])
    assert "readable by other users" in caplog.text
    assert "secret" not in repr(CurveClient.from_files(keys["ok_secret"], keys["server_public"]))


def test_every_command_needs_both_keys_in_one_words(keys, capsys):
    assert CurveClient.from_options(None, None) is None
    assert CurveClient.from_options(keys["ok_secret"], keys["server_public"]).server_key == \
        zmq.auth.load_certificate(keys["server_public"])[0]
    with pytest.raises(CurveKeyError, match="CURVE needs both .*--client-key.*--server-key.*server key None"):
        CurveClient.from_options(keys["ok_secret"], None)
    only_client = ["--client-key", str(keys["ok_secret"])]
    assert rtseg_main(["record", "--pub", "tcp://127.0.0.1:1", *only_client]) == 2
    assert "CURVE needs both" in capsys.readouterr().err
    assert rtseg_main(["prompt", "--server-key", str(keys["server_public"]), "list"]) == 2
    assert "CURVE needs both" in capsys.readouterr().err
    from rtseg.view.viewer import ViewerError, _curve_client

    with pytest.raises(ViewerError, match="CURVE needs both"):
        _curve_client(keys["ok_secret"], None, False)


def test_rtseg_keys(tmp_path, capsys):
    out = tmp_path / "k"
    assert rtseg_main(["keys", str(out), "--name", "laptop", "--authorize", str(tmp_path / "auth")]) == 0
    public, secret = out / "laptop.key", out / "laptop.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub_key, sec_key = zmq.auth.load_certificate(secret)
    assert len(pub_key) == 40 and len(sec_key) == 40 and zmq.auth.load_certificate(public) == (pub_key, None)
    assert (tmp_path / "auth" / "laptop.key").read_bytes() == public.read_bytes()
    assert "laptop.key_secret" in capsys.readouterr().out

    assert rtseg_main(["keys", str(out), "--name", "laptop"]) == 1
    assert "already exist" in capsys.readouterr().err
    assert zmq.auth.load_certificate(secret)[1] == sec_key  # untouched
    assert rtseg_main(["keys", str(out), "--name", "laptop", "--force"]) == 0
    assert zmq.auth.load_certificate(secret)[1] != sec_key
    assert rtseg_main(["keys", str(out), "--name", "../escape"]) == 2
    assert rtseg_main(["keys", str(out)]) == 0 and (out / "server.key_secret").exists()
