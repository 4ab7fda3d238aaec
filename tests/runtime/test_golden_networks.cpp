// Every golden network against PyTorch 1.13.1 (golden files from tests/golden/make_goldens.py), those with
// composites (Residual, Sum, Concat; reference modules in python/kiln_nn.py) too.
#include "golden_check.hpp"

#define KILN_CASE KILN_GOLDEN_TEST
#include "golden_network_cases.inc"
#include "golden_graph_cases.inc"
#undef KILN_CASE
