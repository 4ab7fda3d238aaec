"""python3 -m kiln_export path/to/model.py:factory --input 1,28,28 --name net --out include/ [--check]

factory() returns the module (or a tuple whose first item is it); --input is the per-sample shape, without the
batch dim (twice for a network that starts with a Bilinear). Writes <out>/<name>.hpp and <out>/<name>.safetensors.
"""
import argparse
import importlib.util
import os
import sys

import torch

from . import ExportError, export


def load_factory(spec):
    path, sep, factory = spec.rpartition(":")
    if not sep or not path or not factory:
        raise ExportError(f"{spec!r}: write path/to/model.py:factory")
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such file")
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    module_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    source = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(source)
    if not callable(getattr(source, factory, None)):
        raise ExportError(f"{path} has no function {factory}")
    made = getattr(source, factory)()
    model = made[0] if isinstance(made, tuple) else made
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{path}:{factory}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_shape(text):
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) <= 0:
        raise ExportError(f"--input {text!r}: the per-sample shape as positive sizes, e.g. 1,28,28")
    return dims


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m kiln_export", description=__doc__.splitlines()[0])
    p.add_argument("factory", help="path/to/model.py:factory")
    p.add_argument("--input", action="append", required=True, help="per-sample input shape, e.g. 1,28,28")
    p.add_argument("--name", default="net", help="the C++ variable and the file names (default: net)")
    p.add_argument("--out", default=".", help="the folder to write <name>.hpp and <name>.safetensors into")
    p.add_argument("--check", action="store_true", help="build the header with the installed Kiln and compare")
    p.add_argument("--kiln-prefix", help="Kiln's install prefix for --check (else CMake's default search)")
    a = p.parse_args(argv)
    try:
        model = load_factory(a.factory)
        inputs = tuple(torch.randn((2,) + parse_shape(s)) for s in a.input)
        out = export(model, inputs, name=a.name, out_dir=a.out, check=a.check, kiln_prefix=a.kiln_prefix)
    except ExportError as e:
        print(f"kiln_export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out.header} and {out.weights}: {out.declaration}")
    if out.check is not None:
        print(out.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
