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
