// The backward pass of every golden network against PyTorch autograd (tests/golden/make_train_goldens.py),
// those with composites (Residual, Sum, Concat) too.
#include "grad_check.hpp"

#define KILN_CASE KILN_GRADIENT_TEST
#include "golden_network_cases.inc"
#include "golden_graph_cases.inc"
#undef KILN_CASE
