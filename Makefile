# Front door. `make test`: the suite; `make sim`: broker, Central System and a simulated charger.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test venv check-device sim mosquitto clean twin

venv: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

# Every device module must compile for MicroPython, not only import under CPython: with the
# mpy-cross of the MicroPython the firmware runs on (built with the twin).
check-device: twin
	@for f in boot.py main.py $$(find lib -name '*.py'); do \
	  build/twin/mpy-cross -o /dev/null $$f || exit 1; done
	@echo "mpy-cross: device code compiles"

# Mosquitto (Debian package) is the local stand-in for AWS IoT Core.
mosquitto:
	@test -x /usr/sbin/mosquitto || command -v mosquitto >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }

test: $(STAMP) check-device mosquitto
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin $(PY) -m pytest -q tests

sim: $(STAMP) twin mosquitto
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin $(PY) -m tools.devsim

# The device twin: 32-bit MicroPython v1.28.0 unix binaries, with and without our code frozen
# in, so heap figures on the host are the ESP32's (firmware/README.md).
twin:
	$(PYTHON) -m tools.twin
	$(PYTHON) -m tools.twin --stock

clean:
	rm -rf $(VENV) build state
