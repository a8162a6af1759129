# Deep Speech 2 with RNN weight pruning. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXP ?= demo
RUN_ID := $(shell date +%Y-%m-%d_%H-%M-%S)
DEMO_RUN := outputs/demo/$(RUN_ID)
DEMO_LM := corpora/synth_small/lm-3gram.arpa

.PHONY: install demo test train eval corpus summary train-ddp table3-cpu table3-smoke export bench-sparse fsdd fsdd-cv librispeech clean help

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

install: $(VENV)/.installed  ## create .venv and install the project (idempotent)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install  ## build synth_small and a word LM from 200k more of its sentences, train a small DS2, average its last 5 checkpoints, evaluate on held-out voices and sentences (greedy and LM beam)
	$(PY) scripts/prepare_synth.py --size small --lm-text 200000
	test $(DEMO_LM) -nt corpora/synth_small/lm_text.txt || $(PY) scripts/build_lm.py corpora/synth_small/train.jsonl \
		corpora/synth_small/lm_text.txt --order 3 --out $(DEMO_LM)
	$(PY) train.py experiment=demo hydra.run.dir=$(DEMO_RUN)
	$(PY) scripts/average_checkpoints.py $(DEMO_RUN) --last 5 --out $(DEMO_RUN)/checkpoints/average.pt
	$(PY) evaluate.py $(DEMO_RUN)/checkpoints/average.pt --split test --out $(DEMO_RUN)/eval \
		--beam 500 --lm $(DEMO_LM) --lm-weight 2.5 --word-score 1

test: install  ## the test suite (CPU, no network)
	$(PY) -m pytest -q

train: install  ## train an experiment: make train EXP=demo ARGS="trainer.num_epochs=5"
	$(PY) train.py experiment=$(EXP) $(ARGS)

train-ddp: install  ## data-parallel training on this machine: make train-ddp NPROC=4 EXP=demo ARGS="..."
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(or $(NPROC),2) train.py experiment=$(EXP) $(ARGS)

eval: install  ## evaluate run folders or checkpoints: make eval RUNS="outputs/a outputs/b" ARGS="--baseline a"
	$(PY) evaluate.py $(RUNS) $(ARGS)

corpus: install  ## build the built-in corpus ahead of training: make corpus SIZE=small (tiny, small, full)
	$(PY) scripts/prepare_synth.py --size $(or $(SIZE),small)

summary: install  ## per-layer parameter table: make summary MODEL=ds2_rnn_paper
	$(PY) scripts/model_summary.py model=$(or $(MODEL),ds2_rnn_paper) $(ARGS)

table3-cpu: install  ## the paper's Table 3 + gradual vs hard at CPU scale, resumable (~2 h on 2 cores): results/table3_cpu
	$(PY) scripts/reproduce.py --table cpu $(ARGS)

table3-smoke: install  ## the same driver on the tiny corpus in minutes: results/table3_smoke
	$(PY) scripts/reproduce.py --table smoke $(ARGS)

export: install  ## pruned checkpoint -> sparse deploy files + sizes + WER/CER: make export RUN=outputs/demo_gradual/<run>
	$(PY) scripts/export.py $(RUN) $(or $(ARGS),--dtype fp32 fp16 int8 --evaluate test)

bench-sparse: install  ## the paper's sparse speed table on this machine: results/bench_sparse
	$(PY) scripts/bench_sparse.py $(ARGS)

fsdd: install  ## real recordings on a CPU: build FSDD connected digits, train dense and gradual 90 % (q from the dense run), average the last 5 checkpoints (batch-norm statistics re-estimated on training data), evaluate on the unseen speaker (greedy and digit-lexicon beam; then adapted to his audio), list the digits it confuses
	$(PY) train.py experiment=fsdd hydra.run.dir=outputs/fsdd/$(RUN_ID)
	$(PY) train.py experiment=fsdd_gradual hydra.run.dir=outputs/fsdd_gradual/$(RUN_ID) \
		pruning.q_from=outputs/fsdd/$(RUN_ID)/checkpoints/best.pt
	for run in outputs/fsdd/$(RUN_ID) outputs/fsdd_gradual/$(RUN_ID); do \
		$(PY) scripts/average_checkpoints.py $$run --last 5 --batch-norm-utterances 1000 \
			--out $$run/checkpoints/average.pt || exit 1; done
	for adapt in "" --adapt-batch-norm; do \
		$(PY) evaluate.py outputs/fsdd/$(RUN_ID)/checkpoints/average.pt outputs/fsdd_gradual/$(RUN_ID)/checkpoints/average.pt \
			--split test --baseline fsdd --out outputs/fsdd/$(RUN_ID)/compare$${adapt:+_adapted} --beam 50 --lm train \
			--lm-order 2 --tune $$adapt || exit 1; done
	$(PY) scripts/word_errors.py outputs/fsdd/$(RUN_ID)/compare/*.hyps.jsonl --field beam_hypothesis --top 5 --words 10

fsdd-cv: install  ## speaker-wise cross-validation of the FSDD recipe: every speaker the unseen test speaker once (~1.7 h on 2 cores; results/fsdd_cv/cross_validation.md)
	$(PY) scripts/fsdd_cross_validation.py $(ARGS)

librispeech: install  ## LibriSpeech manifests: make librispeech SUBSETS=mini (or 100, 960) ARGS="--download" or ARGS="--root /data/LibriSpeech"
	$(PY) scripts/prepare_librispeech.py --subsets $(or $(SUBSETS),mini) $(ARGS)

clean:  ## remove training outputs (keeps results/, corpora/ and .venv)
	rm -rf outputs multirun
