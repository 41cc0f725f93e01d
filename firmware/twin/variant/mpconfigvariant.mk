# The device twin: the unix port's standard variant, 32-bit, with single-precision floats
# (mpconfigvariant.h), without btree and ffi (our ESP32 code uses neither). Keeps ssl
# (mbedTLS), socket and _thread from ports/unix/mpconfigport.mk.
# Build it with `python3 -m tools.twin` (or `make twin`), which sets BUILD, VARIANT and
# FROZEN_MANIFEST; needs gcc-multilib.

# -m32 through the *_EXTRA flags: MICROPY_FORCE_32BIT no longer works in v1.28.0.
CFLAGS_EXTRA += -m32
LDFLAGS_EXTRA += -m32

MICROPY_PY_BTREE = 0
MICROPY_PY_FFI = 0

# Our firmware frozen in, unless the command line names another manifest.
FROZEN_MANIFEST ?= $(VARIANT_DIR)/../manifest.py
