import json

import pytest

from diffcore.nn import UNetConfig, load_unet_preset, presets_dir


def test_a_preset_file_gives_a_unet_config_with_overrides(tmp_path):
    path = tmp_path / "nets.json"
    path.write_text(
        json.dumps(
            {
                "small": {
                    "channels": [8, 16],
                    "norm_groups": 4,
                    "attention_levels": [],
                    "head_dim": 8,
                }
            }
        )
    )
    config = load_unet_preset(path, "small", in_channels=1)
    assert config == UNetConfig(
        channels=(8, 16), norm_groups=4, attention_levels=(), head_dim=8, in_channels=1
    )


def test_missing_presets_and_bad_files_are_named(tmp_path):
    path = tmp_path / "nets.json"
    path.write_text('{"small": {"channels": [8, 16], "norm_groups": 4, "wings": 2}}')
    with pytest.raises(ValueError, match="no preset 'large'"):
        load_unet_preset(path, "large")
    with pytest.raises(ValueError, match="does not fit UNetConfig"):
        load_unet_preset(path, "small")
    path.write_text('{"small": ')
    with pytest.raises(ValueError, match="nets.json:1"):
        load_unet_preset(path, "small")


def test_the_workspace_presets_folder_is_found():
    assert (presets_dir() / "README.md").is_file()
