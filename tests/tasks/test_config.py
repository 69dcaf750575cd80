import pytest

from tasks.config import PRESETS, IngestConfig, UnknownPresetError, get_preset


def test_presets_follow_method_rates():
    assert get_preset("droid").decode.target_fps == 5 and get_preset("agibot").decode.target_fps == 5
    assert get_preset("egodex").decode.target_fps == 10 and get_preset("generic").decode.target_fps == 10
    assert get_preset("sim").filter.min_track_coverage == 0.6
    assert set(PRESETS) == {"sim", "droid", "egodex", "agibot", "generic"}


def test_unknown_preset_lists_known_and_closest():
    with pytest.raises(UnknownPresetError, match=r"known presets: agibot, droid, egodex, generic, sim\. Did you mean 'droid'"):
        get_preset("driod")


def test_configs_are_frozen_and_validated():
    cfg = IngestConfig()
    with pytest.raises(Exception):
        cfg.preset = "x"
    with pytest.raises(Exception):
        IngestConfig(track={"fb_max_px": -1})
