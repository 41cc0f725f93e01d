# Front door. `make test`: the suite; `make sim`: broker, Central System and a simulated charger
# (`make sim TRANSPORT=websocket`: no broker, the charger speaks OCPP-J to the Central System).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test venv check-device sim mosquitto clean twin bench soak flash provision deploy repl

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

# TRANSPORT=websocket: the charger straight to the Central System over OCPP-J, no broker;
# SECURITY_PROFILE=0..3 with it (default 0).
sim: $(STAMP) twin mosquitto
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin $(PY) -m tools.devsim \
	  $(if $(TRANSPORT),--transport $(TRANSPORT)) \
	  $(if $(SECURITY_PROFILE),--security-profile $(SECURITY_PROFILE))

# The device twin: 32-bit MicroPython v1.28.0 unix binaries, with and without our code frozen
# in, so heap figures on the host are the ESP32's (firmware/README.md).
twin:
	$(PYTHON) -m tools.twin
	$(PYTHON) -m tools.twin --stock

# Benchmarks on the device twin with Mosquitto and the Central System (tools/bench/): writes
# docs/BENCHMARKS.md and plots, prints one JSON object last. BENCH_ARGS=--quick or --smoke.
bench: $(STAMP) twin mosquitto
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin $(PY) -m tools.bench $(BENCH_ARGS)

# The fault campaign (tools/soak.py): 500 power cuts at random moments of random sessions with
# broker restarts and hangs, Central System outages and bursts; prints its figures (JSON last).
# SOAK_ARGS="--cuts 50" for a shorter one.
soak: $(STAMP) twin mosquitto
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH:/usr/sbin $(PY) -m tools.soak $(SOAK_ARGS)

# Write MicroPython's firmware.bin to a board (tools/flash.py checks the image first).
# make flash PORT=/dev/ttyUSB0 IMAGE=firmware.bin [CHIP=esp32] [ERASE=1] [BAUD=460800] [DRY_RUN=1]
CHIP ?= esp32
BAUD ?= 460800
flash: $(STAMP)
	@test -n "$(PORT)" -a -n "$(IMAGE)" || { echo "usage: make flash PORT=/dev/ttyUSB0 IMAGE=firmware.bin [CHIP=esp32] [ERASE=1] [DRY_RUN=1]"; exit 2; }
	$(PY) -m tools.flash --port $(PORT) --chip $(CHIP) --image $(IMAGE) --baud $(BAUD) \
	  $(if $(filter 1,$(ERASE)),--erase) $(if $(filter 1,$(DRY_RUN)),--dry-run)

# Provision charge points on AWS IoT Core (tools/provision.py): ID=CP001 or CSV=file, OUT=folder
# (default provisioned/), CA=AmazonRootCA1.pem, ROTATE=1 for a new certificate. AWS credentials
# and region as for the AWS CLI.
provision: $(STAMP)
	@test -n "$(ID)$(CSV)" || { echo "usage: make provision ID=CP001|CSV=chargers.csv [CA=AmazonRootCA1.pem] [OUT=dir] [ROTATE=1]"; exit 2; }
	$(PY) -m tools.provision $(if $(CSV),--csv $(CSV),--id $(ID)) $(if $(OUT),--out $(OUT)) \
	  $(if $(CA),--ca $(CA)) $(if $(ROTATE),--rotate)

# Copy the firmware, config.json and credentials to a board with mpremote (tools/deploy.py):
# only what changed, then reset. ID=CP001 (provisioned/CP001) or DIR=folder; DRY_RUN=1.
# Without PORT: the console of the charger `make sim` runs.
deploy: $(STAMP) twin
	@test -n "$(ID)$(DIR)" || { echo "usage: make deploy [PORT=/dev/ttyUSB0] ID=CP001|DIR=folder [DRY_RUN=1]"; exit 2; }
	$(PY) -m tools.deploy $(if $(PORT),--port $(PORT)) $(if $(DIR),--dir $(DIR),--id $(ID)) \
	  $(if $(filter 1,$(DRY_RUN)),--dry-run)

# mpremote's REPL on PORT, or on the console of the charger `make sim` runs (tools/repl.py).
repl: $(STAMP)
	$(PY) -m tools.repl $(if $(PORT),--port $(PORT))

clean:
	rm -rf $(VENV) build state
