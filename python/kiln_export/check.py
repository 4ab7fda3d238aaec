"""--check: build the exported header with the installed Kiln, run it and the PyTorch module on the same random
inputs in eval mode, and report the largest difference.

The program is a small CMake project in a temporary folder that finds Kiln with find_package(Kiln), as a user's
project would; a network Kiln refuses fails to compile, and its one-sentence error is in the ExportError.
"""
import os
import subprocess
import tempfile

import torch

from . import weights
from .canonical import in_mode
from .errors import ExportError

BATCH = 5
_CMAKE = """cmake_minimum_required(VERSION 3.25)
project(kiln_export_check LANGUAGES CXX)
find_package(Kiln REQUIRED)
add_executable(check main.cpp)
target_include_directories(check PRIVATE "{include}")
target_link_libraries(check PRIVATE kiln::kiln)
"""
_MAIN = """#include "{name}.hpp"

#include <kiln/kiln.hpp>

// check weights inputs outputs: the exported network on the inputs (in0, in1) in eval mode, written as `out`.
int main(int, char** argv) {{
  kiln::Model model{{{name}}};
  model.load_safetensors(argv[1]);
  model.eval();
  const kiln::TensorMap in = kiln::load_tensors(argv[2]);
  kiln::save_tensors(argv[3], {{{{"out", model({args})}}}});
}}
"""


def _run(command, what, cwd):
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise ExportError(f"--check: {what} failed:\n{done.stdout[-6000:]}")


class CheckResult:
    def __init__(self, difference, scale, count):
        self.difference, self.scale, self.count = difference, scale, count

    def __str__(self):
        return (f"Kiln and PyTorch agree on {self.count} outputs (batch {BATCH}, eval mode): largest difference "
                f"{self.difference:.3g} (largest output {self.scale:.3g})")


def check_with_kiln(exported, source, inputs, kiln_prefix=None):
    header_dir = os.path.dirname(os.path.abspath(exported.header))
    name = os.path.splitext(os.path.basename(exported.header))[0]
    samples = [torch.randn((BATCH,) + tuple(x.shape[1:])) for x in inputs]
    with tempfile.TemporaryDirectory(prefix="kiln_export_check.") as d:
        with open(os.path.join(d, "CMakeLists.txt"), "w") as f:
            f.write(_CMAKE.format(include=header_dir))
        with open(os.path.join(d, "main.cpp"), "w") as f:
            args = ", ".join(f'in.at("in{k}")' for k in range(len(samples)))
            f.write(_MAIN.format(name=name, args=args))
        weights.save(os.path.join(d, "in.safetensors"), {f"in{k}": x for k, x in enumerate(samples)})
        configure = ["cmake", "-S", d, "-B", os.path.join(d, "build"), "-DCMAKE_BUILD_TYPE=Release"]
        if kiln_prefix:
            configure.append(f"-DCMAKE_PREFIX_PATH={os.path.abspath(kiln_prefix)}")
        _run(configure, "configuring a project that finds Kiln (pass kiln_prefix / --kiln-prefix)", d)
        _run(["cmake", "--build", os.path.join(d, "build")], f"compiling {name}.hpp with Kiln", d)
        _run([os.path.join(d, "build", "check"), os.path.abspath(exported.weights), "in.safetensors",
              "out.safetensors"], "running the exported network", d)
        got = weights.load(os.path.join(d, "out.safetensors"))["out"]
    want = in_mode(source, False, lambda: source(*samples))
    if got.shape != want.shape:
        raise ExportError(f"--check: Kiln gives {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
    result = CheckResult((got - want).abs().max().item(), want.abs().max().item(), want.numel())
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True):
        raise ExportError(f"--check: Kiln and PyTorch differ: largest difference {result.difference:.3g}")
    return result
