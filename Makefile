# The README's commands. Each one sets its environment up first if needed.
#   make test           the whole test suite on the current stack (.venv)
#   make test-classic   the whole test suite on the classic stack (.venv-classic)
#   make demo           the main job on the embedded toy data (detection)
#   make demo-finetune  toy classifier -> detector initialised from it
REQS := tools/install.sh requirements/runtime.txt requirements/optional.txt \
        requirements/tests.txt setup.py
STAMP_current := .venv/.mmsmlp-installed
STAMP_classic := .venv-classic/.mmsmlp-installed
# test processes (pytest-xdist): the machines have 2 cores; WORKERS=0 runs in one
WORKERS ?= 2

.PHONY: install install-classic test test-classic demo demo-finetune
install: $(STAMP_current)
install-classic: $(STAMP_classic)

$(STAMP_current): $(REQS) requirements/stacks/current.txt
	bash tools/install.sh current
	touch $@

$(STAMP_classic): $(REQS) requirements/stacks/classic.txt
	bash tools/install.sh classic
	touch $@

test: $(STAMP_current)
	.venv/bin/python -m pytest -q -n $(WORKERS)

test-classic: $(STAMP_classic)
	.venv-classic/bin/python -m pytest -q -n $(WORKERS)

demo: $(STAMP_current)
	bash tools/demo.sh

demo-finetune: $(STAMP_current)
	bash tools/demo_finetune.sh
