import pytest
from young.contract import config
from young.contract.errors import UsageError


def test_sections_override_top_level_and_paths_resolve_against_file(tmp_path):
    cfg_file = tmp_path / "sub" / "young.yaml"
    cfg_file.parent.mkdir()
    cfg_file.write_text(
        "crds_path: cache\nwisp_directory: /abs/wisps\nrotation: 0\n"
        "stage3: {rotation: 12.5}\n"
        "stage1: {steps: {jump: {rejection_threshold: 5}}}\nramp_fit_cores: half\n"
    )
    cfg = config.load(str(cfg_file))
    assert cfg.data["crds_path"] == str(tmp_path / "sub" / "cache")
    assert cfg.section("stage3")["rotation"] == 12.5 and cfg.section("stage2")["rotation"] == 0
    assert cfg.step_parameters("stage1") == {"jump.rejection_threshold": 5, "ramp_fit.maximum_cores": "half"}
    assert cfg.warnings == []


def test_env_variable_and_unknown_keys_reported(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("pixfrac: 0.8\nbogus_key: 1\n")
    cfg = config.load(None, env={"YOUNG_CONFIG": str(f)})
    assert cfg.get("pixfrac") == 0.8
    assert cfg.warnings == []   # unknown keys are the tools' business: config.check_keys, before any work
    with pytest.raises(UsageError, match=r"c.yaml: unknown key 'bogus_key'"):
        config.check_keys(cfg, {"fnoise": [], "wisp": [], "bkg": []})
    assert config.load(None, env={}).data == {}


def test_skip_steps_seed_names_and_unknown(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("skip_steps: [wisp_subtraction, bkg]\n")
    assert config.skip_steps(config.load(str(f))) == {"wisp", "bkg"}
    f.write_text("skip_steps: [wisps]\n")
    with pytest.raises(UsageError, match="unknown step 'wisps'"):
        config.load(str(f))


@pytest.mark.parametrize("text, msg", [("a: [1\n", "not valid YAML"), ("- 1\n- 2\n", "must be a YAML mapping")])
def test_bad_config_is_usage_error(tmp_path, text, msg):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UsageError, match=msg) as e:
        config.load(str(f))
    assert str(f) in e.value.line()


def test_parse_set():
    assert config.parse_set(["jump.rejection_threshold=5", "resample.skip=true", "tweakreg.kernel=square"]) == {
        "jump.rejection_threshold": 5, "resample.skip": True, "tweakreg.kernel": "square"}
    for bad in ("jump=5", "rejection_threshold", ".x=1"):
        with pytest.raises(UsageError, match="STEP.PARAM=VALUE"):
            config.parse_set([bad])
