import pytest

from tasks.config import (
    PRESETS,
    IngestConfig,
    SettingError,
    UnknownPresetError,
    get_preset,
    merge_config,
    read_config_file,
    with_overrides,
)


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


def test_values_read_as_yaml_scalars_and_lists():
    from tasks.config import parse_assignments

    got = parse_assignments(["decode.target_fps=5", "track.fb_max_px=0.7", "pose.dense_refine=true", "depth.input_size=null",
                             "x=[1,2]", "depth.backend=depth-anything", "captions.backend=off", "lr=1e-4", "corpus="])
    assert got == {"decode.target_fps": 5, "track.fb_max_px": 0.7, "pose.dense_refine": True, "depth.input_size": None,
                   "x": [1, 2], "depth.backend": "depth-anything", "captions.backend": "off", "lr": 1e-4, "corpus": ""}
    assert parse_assignments(["a=1", "a=2"]) == {"a": 2}  # the later one wins
    with pytest.raises(SettingError, match="expected KEY=VALUE"):
        parse_assignments(["decode.target_fps"])
    with pytest.raises(SettingError, match=r"cannot read '\[1' as a YAML value"):
        parse_assignments(["x=[1"])


def test_overrides_reach_deep_settings_and_leave_the_rest():
    base = get_preset("droid")
    cfg = with_overrides(base, {"decode.target_fps": 7, "track.fb_max_px": 0.7, "captions": {"max_chunks": 2}})
    assert (cfg.decode.target_fps, cfg.track.fb_max_px, cfg.captions.max_chunks) == (7.0, 0.7, 2)
    assert cfg.decode.max_frames == base.decode.max_frames and cfg.captions.max_chunk_len == base.captions.max_chunk_len
    assert cfg.corpus == "droid" and base.decode.target_fps == 5.0  # the preset itself is untouched
    assert type(cfg) is IngestConfig


def test_a_wrong_path_lists_the_level_and_the_closest_match():
    cfg = get_preset("sim")
    with pytest.raises(SettingError) as err:
        with_overrides(cfg, {"decode.target_fsp": 5})
    assert str(err.value) == ("unknown setting 'decode.target_fsp'; decode has: max_frames, max_width, spill_dir, spill_mb, target_fps. "
                              "Did you mean 'decode.target_fps'?")
    with pytest.raises(SettingError, match=r"unknown setting 'trak.fb_max_px'; the top level has: .*track.*"
                                           r"Did you mean 'track.fb_max_px'\?"):
        with_overrides(cfg, {"trak.fb_max_px": 1})
    with pytest.raises(SettingError, match="'decode.target_fps' is a single value"):
        with_overrides(cfg, {"decode.target_fps.x": 1})
    with pytest.raises(SettingError, match=r"unknown setting 'captions.max_chunk'; .* Did you mean 'captions.max_chunks'"):
        with_overrides(cfg, {"captions": {"max_chunk": 2}})


def test_a_wrong_value_names_the_setting_with_pydantics_message():
    with pytest.raises(SettingError) as err:
        with_overrides(get_preset("sim"), {"decode.target_fps": -1})
    assert str(err.value) == "invalid value for 'decode.target_fps': Input should be greater than 0 (got -1)"
    with pytest.raises(SettingError, match=r"invalid value for 'captions.backend': Input should be 'template', 'vlm' or 'off'"):
        with_overrides(get_preset("sim"), {"captions.backend": "poetry"})


def test_a_partial_config_file_merges_deeply_over_the_preset(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("corpus: lab\ndecode:\n  max_width: 320\ntrack:\n  fb_max_px: 0.5\ncaptions:\n  backend: off\n")
    base = get_preset("egodex")
    cfg = merge_config(base, read_config_file(path))
    assert (cfg.corpus, cfg.decode.max_width, cfg.track.fb_max_px, cfg.captions.backend) == ("lab", 320, 0.5, "off")
    assert cfg.decode.target_fps == base.decode.target_fps == 10.0  # a sibling the file does not name is kept
    assert cfg == base.model_copy(update={
        "corpus": "lab", "decode": base.decode.model_copy(update={"max_width": 320}),
        "track": base.track.model_copy(update={"fb_max_px": 0.5}),
        "captions": base.captions.model_copy(update={"backend": "off"}),
    })


@pytest.mark.parametrize("text, message", [
    (None, "cannot read config file"),
    ("decode: [1\n", "is not YAML: expected ',' or ']'"),
    ("- decode\n", "must hold a mapping of settings, not a list"),
    ("decode:\n  fps: 5\n", r"unknown setting 'decode.fps'; decode has: max_frames, max_width, spill_dir, spill_mb, target_fps"),
])
def test_a_bad_config_file_is_refused_clearly(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SettingError, match=message):
        merge_config(get_preset("sim"), read_config_file(path))
