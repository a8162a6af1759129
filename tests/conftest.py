"""Shared fixtures: a tiny synthetic corpus and a one-step run on it, built once per test session, and tiny-run
configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from data.manifest import read_manifest, write_manifest
from training.compose import compose_config
from training.pipeline import manifest_paths


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> dict[str, Path]:
    """Manifests of the ``synth_tiny`` corpus (built in seconds with espeak-ng)."""
    corpus_dir = tmp_path_factory.mktemp("synth_tiny")
    cfg = compose_config(["data=synth_tiny", f"data.corpus_dir={corpus_dir}"])
    return manifest_paths(cfg.data, progress=False)


@pytest.fixture(scope="session")
def overfit_manifest(tiny_corpus, tmp_path_factory) -> Path:
    """The 8 shortest training utterances: a set a tiny model can memorise in a few dozen steps."""
    utterances = sorted(read_manifest(tiny_corpus["train"]), key=lambda u: u.duration)[:8]
    path = tmp_path_factory.mktemp("overfit") / "train8.jsonl"
    write_manifest(path, utterances)
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    """A ds2_tiny run folder after one step on the tiny synthetic corpus (its outputs are near-random)."""
    from train import main as train_main

    out = tmp_path_factory.mktemp("one_step_run")
    train_main(compose_config(["model=ds2_tiny", "data=synth_tiny", f"data.corpus_dir={tiny_corpus['train'].parent}",
                               "data.num_workers=0", f"trainer.output_dir={out}", "trainer.progress=false",
                               "trainer.max_steps=1"]))
    return out


@pytest.fixture
def tiny_run_overrides():
    """Function giving the overrides of a seconds-long CPU run of ``ds2_tiny`` on explicit manifests."""
    return _tiny_run_overrides


def _tiny_run_overrides(train_manifest: Path, dev_manifest: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "model=ds2_tiny",
        "data=synth_tiny",
        "data.synth=null",
        f"data.train_manifest={train_manifest}",
        f"data.dev_manifest={dev_manifest}",
        f"data.test_manifest={dev_manifest}",
        "data.num_workers=0",
        "data.features.stats_utterances=0",
        f"trainer.output_dir={output_dir}",
        "trainer.progress=false",
        "trainer.log_every_steps=1",
        "trainer.threads=2",
        *extra,
    ]
