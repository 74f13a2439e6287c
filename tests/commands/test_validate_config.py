"""`rtseg validate-config` checks what `rtseg run` would trip over on this machine: source
strings, CURVE key files and the checkpoint."""
from __future__ import annotations

from rtseg.cli import main as cli
from rtseg.security import create_key_pair


def _config(tmp_path, source: str = "synthetic://64x48@5", extra: str = "", model: str = "") -> str:
    path = tmp_path / "c.yaml"
    path.write_text(f"cameras:\n  - id: cam\n    source: {source!r}\nmodel:\n  name: sam2.1_hiera_t\n{model}{extra}")
    return str(path)


def test_source_schemes_and_missing_files_are_named(tmp_path, capsys):
    assert cli(["validate-config", _config(tmp_path, "rtps://user:pw@cam/stream")]) == 1
    err = capsys.readouterr().err
    assert "the file is valid, but:" in err and "cameras.cam.source: unknown source scheme 'rtps'" in err
    assert "pw" not in err  # credentials stay out of the output
    assert cli(["validate-config", _config(tmp_path, str(tmp_path / "missing.mp4"))]) == 1
    assert f"cameras.cam.source: no video file or image folder '{tmp_path / 'missing.mp4'}'" in capsys.readouterr().err
    (tmp_path / "frames").mkdir()
    for good in (str(tmp_path / "frames"), "rtsp://cam/stream", "0", "synthetic://64x48@5"):
        assert cli(["validate-config", _config(tmp_path, good, model="  weights: random\n")]) == 0, good
        assert ": OK (1 camera(s): cam" in capsys.readouterr().out


def test_curve_key_files_must_exist_be_files_and_hold_the_right_keys(tmp_path, capsys):
    keys = tmp_path / "keys"
    server_public, server_secret = create_key_pair(keys, "server")
    (tmp_path / "auth").mkdir()
    curve = "security:\n  curve: true\n  server_secret_key: {secret}\n  authorized_clients: {auth}\n"
    bad = curve.format(secret=tmp_path / "nope.key_secret", auth=tmp_path / "no-folder")
    assert cli(["validate-config", _config(tmp_path, extra=bad, model="  weights: random\n")]) == 1
    err = capsys.readouterr().err
    assert f"security.server_secret_key: CURVE key file {tmp_path / 'nope.key_secret'} does not exist" in err
    assert f"security.authorized_clients: authorized clients folder {tmp_path / 'no-folder'} does not exist" in err
    public_only = curve.format(secret=server_public, auth=tmp_path / "auth")
    viewer = f"viewer:\n  client_key: {keys}\n  server_key: {server_public}\n"
    assert cli(["validate-config", _config(tmp_path, extra=public_only + viewer, model="  weights: random\n")]) == 1
    err = capsys.readouterr().err
    assert "security.server_secret_key: " in err and "holds only a public key" in err
    assert f"viewer.client_key / viewer.server_key: CURVE key file {keys} is not a file" in err
    good = curve.format(secret=server_secret, auth=tmp_path / "auth")
    assert cli(["validate-config", _config(tmp_path, extra=good, model="  weights: random\n")]) == 0


def test_the_checkpoint_is_present_or_will_be_downloaded(tmp_path, capsys):
    missing = tmp_path / "ckpt" / "sam2.1_hiera_tiny.pt"
    assert cli(["validate-config", _config(tmp_path, model=f"  checkpoint: {missing}\n")]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint {missing} is missing: `rtseg run` will download it from https://" in out
    assert f"`rtseg download sam2.1_hiera_t --dir {missing.parent}`" in out
    missing.parent.mkdir()
    missing.write_bytes(b"weights")
    assert cli(["validate-config", _config(tmp_path, model=f"  checkpoint: {missing}\n")]) == 0
    assert f"checkpoint {missing} is present" in capsys.readouterr().out
    assert cli(["validate-config", _config(tmp_path, model="  weights: random\n")]) == 0
    assert "model.weights is random: no checkpoint is loaded" in capsys.readouterr().out
