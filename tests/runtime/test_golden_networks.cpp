// Every golden network against PyTorch 1.13.1 (golden files from tests/golden/make_goldens.py).
#include "golden_check.hpp"

#define KILN_CASE KILN_GOLDEN_TEST
#include "golden_network_cases.inc"
#undef KILN_CASE
