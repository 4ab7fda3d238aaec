"""Any PyTorch module Kiln can express, rebuilt in Kiln's shape.

Kiln's shape is a torch.nn.Sequential of the torch.nn layers Kiln has, nested Sequentials and kiln_nn's Residual,
Sum and Concat: a module tree whose structure is the C++ declaration and whose state_dict() keys are Kiln's.

- A Sequential already in that shape is kept as it is (its keys do not change).
- Anything else is traced with torch.fx (trace.py) and rebuilt from the graph.

The rebuilt module shares the source's layers and parameters; export() runs both and checks they agree.
"""
import torch
from torch import nn

import kiln_nn

from . import spelling
from .errors import ExportError

COMPOSITES = (kiln_nn.Residual, kiln_nn.Sum, kiln_nn.Concat)
MAX_BRANCHES = 8  # nn::max_branches in dsl/include/kiln/dsl/composites.hpp


def in_mode(module, training, call, run=True):
    """call() with every submodule of `module` in train or eval mode, the modes restored after; with run=True, an
    error of the module's own becomes an ExportError (the example inputs do not fit it)."""
    modes = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        with torch.no_grad():
            return call()
    except Exception as e:
        if not run or isinstance(e, ExportError):
            raise
        raise ExportError(f"{type(module).__name__} does not run on the example inputs: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    finally:
        for m, mode in modes:
            m.training = mode


def children_of(m):
    """A Sequential's layers, a Residual's body, a Sum's or Concat's branches, with their key prefixes."""
    if spelling.is_sequential(m):
        return list(m.named_children())
    if isinstance(m, kiln_nn.Residual):
        return [(f"body.{j}", c) for j, c in enumerate(m.body)]
    return [(f"branches.{k}", b) for k, b in enumerate(m.branches)]


def describe(m, path):
    """"1.body.0 (Linear)", or the type alone for the module exported itself."""
    return f"{path} ({type(m).__name__})" if path else type(m).__name__


def check_layer(m, path, where=""):
    """ExportError unless Kiln has this layer with these hyperparameters and float32 parameters."""
    what = describe(m, path) + where
    try:
        spelling.layer(m)
    except ExportError:
        raise ExportError(f"{what} has no Kiln equivalent") from None
    for name, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
        want = torch.int64 if name == "num_batches_tracked" else torch.float32
        if t.dtype != want:
            raise ExportError(f"{what}: {name} is {t.dtype}; Kiln's is {want} (convert the module first)")
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)) and m.dim is None:
        raise ExportError(f"{what} has no dim (an implicit dim is deprecated in torch); give it one")
    if isinstance(m, nn.Unflatten) and any(int(d) < 0 for d in m.unflattened_size):
        raise ExportError(f"{what}: Kiln's Unflatten takes explicit sizes, not {tuple(m.unflattened_size)}")
    if isinstance(m, nn.LayerNorm) and m.elementwise_affine is False and getattr(m, "bias", None) is not None:
        raise ExportError(f"{what} has a bias but no weight")


def check_join(m, path):
    if isinstance(m, (kiln_nn.Sum, kiln_nn.Concat)) and len(m.branches) > MAX_BRANCHES:
        raise ExportError(f"{describe(m, path)} has {len(m.branches)} branches; Kiln takes at most "
                          f"{MAX_BRANCHES} (nest them)")
    if isinstance(m, kiln_nn.Concat) and m.dim == 0:
        raise ExportError(f"{describe(m, path)} joins along dim 0, the batch dim; Kiln concatenates per-sample dims")


def in_kiln_shape(m, path=""):
    """True when m is already Kiln's shape all the way down; ExportError for a torch.nn layer Kiln lacks."""
    if spelling.is_sequential(m) or type(m) in COMPOSITES:
        check_join(m, path)
        return all(in_kiln_shape(c, f"{path}.{k}" if path else k) for k, c in children_of(m))
    try:
        check_layer(m, path)
        return True
    except ExportError:
        if type(m).__module__.startswith("torch.nn"):
            raise
        return False  # a module of the user's own: traced


def kiln_module(module, example_inputs):
    """The module in Kiln's shape: a Sequential (kiln_nn.Sequential when it takes two inputs)."""
    two_inputs = len(example_inputs) == 2
    if spelling.is_sequential(module) and in_kiln_shape(module):
        if two_inputs and not isinstance(module, kiln_nn.Sequential):
            return kiln_nn.Sequential(*module)  # same keys; torch.nn.Sequential's forward takes one input
        return module
    if not spelling.is_sequential(module) and in_kiln_shape(module):
        return (kiln_nn.Sequential if two_inputs else nn.Sequential)(module)
    from .trace import rebuild  # only here: needs torch.fx
    return rebuild(module, example_inputs)
