"""Every config file composes against the schema; misspelt keys are errors, not silent no-ops."""
import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from training.compose import CONFIG_DIR, compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "data", "optim", "pruning", "trainer"])
def test_every_group_option_composes(group):
    assert options(group), f"configs/{group} is empty"
    for option in options(group):
        cfg = compose_config([f"{group}={option}", "trainer.output_dir=unused"])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose_config([f"experiment={experiment}", "trainer.output_dir=unused"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["experiment_name"]


def test_unknown_keys_are_errors_that_name_the_key():
    with pytest.raises(ConfigCompositionException, match="num_epoch"):
        compose_config(["trainer.num_epoch=3"])


def test_unknown_key_in_a_yaml_file_is_an_error(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "misspelt.yaml").write_text("rnn_hidden_sise: 10\n")
    with pytest.raises(ConfigCompositionException, match="rnn_hidden_sise"):
        compose_config([f"hydra.searchpath=[file://{tmp_path}]", "model=misspelt"])


def test_wrong_types_are_errors():
    with pytest.raises(ConfigCompositionException, match="num_epochs"):
        compose_config(["trainer.num_epochs=many"])
