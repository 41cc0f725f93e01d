"""Driver tests on the simulated machine module and device models (tools/simfs)."""
