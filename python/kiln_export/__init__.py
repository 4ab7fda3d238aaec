"""kiln_export: a PyTorch module as a Kiln network, the C++ type and its weights.

    import kiln_export
    kiln_export.export(model, torch.randn(1, 1, 28, 28), name="net", out_dir="include")
    # include/net.hpp:          inline constexpr kiln::nn::Sequential net{kiln::input<1, 28, 28>, ...};
    # include/net.safetensors:  the weights and buffers under Kiln's names (kiln::Model::load_safetensors)

or from the shell: python3 -m kiln_export model.py:make_model --input 1,28,28 --name net --out include/

A module in Kiln's shape (an nn.Sequential of layers Kiln has, nested, with kiln_nn's Residual, Sum and Concat)
keeps its state_dict keys; any other module is traced with torch.fx and rebuilt (trace.py). Whatever has no Kiln
equivalent is an ExportError naming it, never a different network: the rebuilt module is run against the source
before anything is written. Needs only torch.
"""
import os
import re

import torch

from . import spelling, weights
from .canonical import in_mode, kiln_module
from .errors import ExportError

__all__ = ["export", "kiln_module", "declaration", "ExportError", "Exported"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Exported:
    """What export() wrote: the header, the weights, the Kiln-shaped module and its declaration, and the largest
    difference between the source module and the Kiln-shaped one on the example inputs."""

    def __init__(self, header, weights_path, module, declaration, difference):
        self.header, self.weights, self.module = header, weights_path, module
        self.declaration, self.difference = declaration, difference
        self.check = None  # check.CheckResult, after export(check=True)


def declaration(module, example_inputs):
    """The one-line C++ declaration of a module (`kiln::nn::Sequential{kiln::input<...>, nn::Linear<...>{}, ...}`,
    `nn` being kiln::nn) with the Kiln-shaped module it spells."""
    inputs = _as_tuple(example_inputs)
    m = kiln_module(module, inputs)
    return spelling.network(m, [tuple(x.shape[1:]) for x in inputs]), m


def export(module, example_inputs, name="net", out_dir=".", check=False, kiln_prefix=None):
    """Write <out_dir>/<name>.hpp and <out_dir>/<name>.safetensors; returns an Exported.

    example_inputs: a tensor, or a tuple of two for a network whose first layer is a Bilinear; their dims after
    the first (the batch dim) are the network's per-sample input shape. check=True also builds the header with
    the installed Kiln (kiln_prefix: its install prefix, else CMake's default search) and compares its outputs
    with the module's (check.py); the result is in Exported.check."""
    if not _IDENTIFIER.fullmatch(name):
        raise ExportError(f"name {name!r} is not a C++ identifier")
    inputs = _as_tuple(example_inputs)
    shapes = [tuple(x.shape[1:]) for x in inputs]
    m = kiln_module(module, inputs)
    difference = _compare(module, m, inputs)
    os.makedirs(out_dir, exist_ok=True)
    header = os.path.join(out_dir, f"{name}.hpp")
    weights_path = os.path.join(out_dir, f"{name}.safetensors")
    one_line = spelling.network(m, shapes)
    state = {k: v for k, v in m.state_dict().items()}
    weights.save(weights_path, state, {"kiln_network": one_line, "source": type(module).__name__})
    _write_header(header, name, module, m, shapes)
    out = Exported(header, weights_path, m, one_line, difference)
    if check:
        from .check import check_with_kiln
        out.check = check_with_kiln(out, module, inputs, kiln_prefix)
    return out


def _as_tuple(example_inputs):
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not 1 <= len(inputs) <= 2 or not all(isinstance(x, torch.Tensor) and x.dim() >= 2 for x in inputs):
        raise ExportError("example_inputs: one tensor [batch, dims...], or two for a network that starts with a "
                          "Bilinear")
    return inputs


def _compare(source, rebuilt, inputs):
    """The largest difference between the two modules in eval mode; ExportError when they disagree (a bug of the
    exporter: the rebuilt module is made of the same layers and the same operations)."""
    want = in_mode(source, False, lambda: source(*inputs))
    got = in_mode(rebuilt, False, lambda: rebuilt(*inputs))
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        raise ExportError(f"the rebuilt network gives {tuple(got.shape)} where {type(source).__name__} gives "
                          f"{getattr(want, 'shape', type(want).__name__)}")
    difference = (want - got).abs().max().item() if want.numel() else 0.0
    same_nans = torch.equal(want.isnan(), got.isnan())
    if not same_nans or not torch.allclose(want, got, rtol=1e-5, atol=1e-6, equal_nan=True):
        raise ExportError(f"the rebuilt network differs from {type(source).__name__} by {difference} on the example "
                          "inputs; please report this with the module")
    return difference


def _write_header(path, name, source, m, shapes):
    repr_lines = ["//   " + line for line in repr(source).splitlines()]
    lines = ["// Written by kiln_export (python/kiln_export in Kiln's repository) from this PyTorch module:",
             *repr_lines,
             f"// Its weights and buffers, under Kiln's names: {name}.safetensors (kiln::Model::load_safetensors).",
             "// Export again rather than editing.",
             "#pragma once",
             "",
             "#include <kiln/dsl/layers.hpp>",
             "#include <kiln/dsl/sequential.hpp>",
             ""]
    body = spelling.network_lines(m, shapes)
    body[0] = f"inline constexpr {body[0][:-1]} {name}{{"
    lines += body
    lines[-1] += ";"
    weights.write_whole(path, [("\n".join(lines) + "\n").encode("utf-8")])
