// The backward pass of every layer alone against PyTorch autograd (tests/golden/make_train_goldens.py).
#include "grad_check.hpp"

#define KILN_CASE KILN_GRADIENT_TEST
#include "golden_layer_cases.inc"
#undef KILN_CASE
