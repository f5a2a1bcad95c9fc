# The README's commands. Each one sets the environment up first if needed.
#   make test   the whole test suite
#   make demo   the main job on the embedded toy data (detection)
#   make demo-finetune   toy classifier -> detector initialised from it
PY    := .venv/bin/python
STAMP := .venv/.mmsmlp-installed

.PHONY: install test demo demo-finetune
install: $(STAMP)

$(STAMP): tools/install.sh requirements/runtime.txt requirements/torch.txt requirements/tests.txt setup.py
	bash tools/install.sh
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	bash tools/demo.sh

demo-finetune: $(STAMP)
	bash tools/demo_finetune.sh
