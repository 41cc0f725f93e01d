// The device twin: the unix port's standard variant, built 32-bit (mpconfigvariant.mk) so
// objects have the ESP32's sizes. Same feature level as the ESP32 port.
#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// Floats as on the ESP32: single precision (a unix time held in a float moves in 128 s steps
// there, and must here too). time.time() then returns an int, as on the ESP32.
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)

// What every unix variant but "minimal" enables: ssl/socket/_thread come from the .mk,
// VfsRom, the unix time/os modules and .mpy loading from here.
#include "variants/mpconfigvariant_common.h"

// No unix `machine` module: the simulated one (tools/simfs/machine.py, frozen) stands in for
// the ESP32's, so drivers run unchanged against simulated peripherals.
#undef MICROPY_PY_MACHINE
#define MICROPY_PY_MACHINE (0)
#undef MICROPY_PY_MACHINE_PULSE
#define MICROPY_PY_MACHINE_PULSE (0)
#undef MICROPY_PY_MACHINE_PIN_BASE
#define MICROPY_PY_MACHINE_PIN_BASE (0)

// A callback scheduled from another thread wakes the main thread out of any wait, so it runs
// there as on the ESP32 (wake.c).
void twin_wake_main(void);
#define MICROPY_SCHED_HOOK_SCHEDULED twin_wake_main()
