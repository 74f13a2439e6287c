"""Config files: every shipped config validates; a bad key or value is named with its line."""
from __future__ import annotations

from pathlib import Path

import pytest

from rtseg.cli import main as cli_main
from rtseg.config import ConfigError, load_config, parse_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.cameras and cfg.model.name.startswith("sam2")


GOOD = """\
cameras:
  - id: cam
    source: "synthetic://64x48@5"
model:
  name: sam2.1_hiera_t
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace("  name: sam2.1_hiera_t", "  name: sam2.1_hiera_t\n  imagesize: 512"),
         "line 6: model.imagesize: Extra inputs are not permitted"),
        (GOOD.replace("sam2.1_hiera_t", "sam3_huge"), "line 5: model.name: unknown model 'sam3_huge'"),
        (GOOD + "segmenter:\n  frame_policy: sometimes\n", "line 7: segmenter.frame_policy"),
        (GOOD.replace("id: cam", "id: 'bad id!'"), "line 2: cameras.0.id"),
        (GOOD + "security:\n  curve: true\n", "set server_secret_key and authorized_clients"),
        ("cameras: []\n", "cameras: List should have at least 1 item"),
        (GOOD + "  device: tpu\n", "line 6: model.device: String should match pattern"),
        (GOOD + "network:\n  pub: not-an-endpoint\n", "line 7: network.pub: String should match pattern"),
        (GOOD + "network:\n  pub: tcp://127.0.0.1:7000\n  control: tcp://127.0.0.1:7000\n",
         "both 'tcp://127.0.0.1:7000': give them different ports"),
        (GOOD + "recorder:\n  video: overlay\n",
         "recorder.video is 'overlay' but the segmenter publishes no frames: set network.frame_topic.enabled: true"),
        (GOOD + "recorder:\n  video: raw\nnetwork:\n  frame_topic: {enabled: false}\n", "publishes no frames"),
        (GOOD + "recorder:\n  frames: true\n", "recorder.frames is on but the segmenter publishes no frames"),
        ("cameras: [\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_errors_name_the_key_and_line(text, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "x.yaml")
    assert expected in str(err.value)


def test_validate_config_command(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert cli_main(["validate-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("sam2.1_hiera_t", "nope"))
    assert cli_main(["validate-config", str(bad)]) == 1
    assert f"{bad}:line 5: model.name" in capsys.readouterr().err
    assert cli_main(["validate-config", str(tmp_path / "missing.yaml")]) == 1


def test_video_with_the_frame_topic_is_valid_and_rtseg_record_checks_its_own_video(tmp_path, capsys):
    cfg = parse_config(GOOD + "recorder:\n  video: overlay\nnetwork:\n  frame_topic: {enabled: true}\n")
    assert cfg.recorder.video == "overlay"
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    assert cli_main(["record", str(path), "--video", "overlay", "--dir", str(tmp_path / "rec")]) == 2
    assert "recorder.video is 'overlay' but the segmenter publishes no frames" in capsys.readouterr().err
    assert not (tmp_path / "rec").exists()  # refused at start, before anything was written


def test_state_dir_defaults_to_one_folder_per_config_name(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    a = tmp_path / "gate.yaml"
    a.write_text(GOOD)
    assert load_config(a).supervisor.state_dir == tmp_path / "state" / "rtseg" / "gate"
    b = tmp_path / "own.yaml"
    b.write_text(GOOD + "supervisor:\n  state_dir: /srv/rtseg\n")
    assert str(load_config(b).supervisor.state_dir) == "/srv/rtseg"


def test_object_chunk_is_chosen_per_device_unless_set():
    """Unset, the segmenter batches all objects on a GPU and runs them one at a time on the CPU
    (where batching measured slower); a configured value wins everywhere."""
    from rtseg.pipeline.segmenter import object_chunk

    auto = parse_config("cameras: [{id: c, source: 'synthetic://64x48'}]")
    assert (object_chunk(auto, "cpu"), object_chunk(auto, "cuda:1")) == (1, None)
    set4 = parse_config("cameras: [{id: c, source: 'synthetic://64x48'}]\nengine: {object_chunk: 4}")
    assert (object_chunk(set4, "cpu"), object_chunk(set4, "cuda:0")) == (4, 4)
