"""The exporter (python/kiln_export) against the golden cases, the traced modules and its refusals.

Usage (Debian's torch; the golden generator also needs the safetensors package):
    PYTHONPATH=python:build/pydeps-torch /usr/bin/python3 tests/export/test_export.py goldens|refusals|cli

  goldens   every case of tests/golden/make_goldens.py, built as the generator builds it: exported as it is, its
            declaration must be the one Kiln's golden tests compile and its weights the golden file's; wrapped in a
            module of the user's own (so torch.fx traces it), the rebuilt network must give the golden outputs in
            eval mode and, with Kiln's dropout masks, in train mode.
  refusals  what has no Kiln equivalent: each message, with the module path and the source line.
  cli       python3 -m kiln_export: a factory in a file, a tuple factory, two inputs, its errors.
"""
import copy
import os
import re
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
sys.path.insert(0, HERE)

import kiln_export  # noqa: E402
import kiln_nn  # noqa: E402
from kiln_export import ExportError, weights  # noqa: E402

GOLDEN_DIR = os.path.join(ROOT, "tests", "golden", "data")
B = 64  # the golden batch the outputs are compared at


def golden(name):
    """The golden file's tensors and metadata."""
    return weights.load_with_metadata(os.path.join(GOLDEN_DIR, f"{name}.safetensors"))


class UserModule(nn.Module):
    """A network held by a module of the user's own, so that the exporter traces it instead of walking it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


class UserModuleTwoInputs(UserModule):
    def forward(self, x, y):
        return self.net(x, y)


def close(a, b, what):
    import make_goldens as mg
    assert a.shape == b.shape, (what, a.shape, b.shape)
    worst = mg.worst_difference(a, b)
    assert worst <= 1e-4, (what, worst)


def test_goldens():
    import make_goldens as mg
    checked = 0
    for idx, (name, builder, shapes, gen) in enumerate(mg.CASES):
        torch.manual_seed(mg.CASE_SEED_BASE + idx)
        model = builder()
        mg.perturb(model)
        model.eval()
        tensors, meta = golden(name)
        inputs = tuple(tensors[f"in{k}.b{B}"] for k in range(len(shapes)))
        with tempfile.TemporaryDirectory() as d:
            out = kiln_export.export(model, inputs, name="net", out_dir=d)
            assert out.declaration == meta["kiln_network"], (name, out.declaration, meta["kiln_network"])
            written = weights.load(out.weights)
            assert set(written) == {k for k in tensors if "." not in k or not k.split(".")[0] in
                                    ("in0", "in1", "eval", "train")}, name
            for k, v in written.items():
                assert v.dtype == tensors[k].dtype and torch.equal(v, tensors[k]), (name, k)
            with open(out.header) as f:
                assert "inline constexpr kiln::nn::Sequential net{" in f.read(), name
        traced = kiln_export.kiln_module((UserModule if len(shapes) == 1 else UserModuleTwoInputs)(model), inputs)
        check_traced_golden(mg, idx, name, traced, tensors, inputs)
        checked += 1
    print(f"goldens: {checked} cases exported as they are (declaration and weights) and traced (outputs)")


def check_traced_golden(mg, idx, name, traced, tensors, inputs):
    want = tensors.get(f"eval.out.b{B}", inputs[0])  # absent: eval is the identity (Dropouts alone)
    with torch.no_grad():
        close(traced.eval()(*inputs), want, (name, "eval"))
    if f"train.out.b{B}" not in tensors:
        return
    m = copy.deepcopy(traced)
    mg.replace_dropouts(m, mg.DROPOUT_SEED_BASE + idx, step=0)
    with torch.no_grad():
        close(m.train()(*inputs), tensors[f"train.out.b{B}"], (name, "train"))


# ---- refusals ---------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x):
        return self.attn(self.fc(x), x, x)[0]


class Mul(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x) * x


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


class CrossBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        h = self.a(x)
        g = torch.relu(h)
        return torch.cat([g, torch.tanh(g) + h], -1)


class AlwaysDrops(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5)


class BatchCat(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], 0)


class Broadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return x + self.fc(x)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


class Transpose(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), 2, 4).transpose(1, 2).flatten(1)


class ScaledLinear(nn.Linear):
    """A subclass of a layer Kiln has, with a forward of its own: traced, not taken for a Linear."""

    def forward(self, x):
        return super().forward(x) * 2


class Tuple(nn.Module):
    def forward(self, x):
        return x, x


REFUSALS = [
    # (module, per-sample shape, the message as a regular expression)
    (lambda: nn.Sequential(nn.Linear(8, 8), nn.Conv1d(1, 1, 3)), (8,),
     r"^1 \(Conv1d\) has no Kiln equivalent$"),
    (lambda: nn.Sequential(nn.Linear(8, 8), kiln_nn.Residual(nn.Linear(8, 8), nn.PReLU())), (8,),
     r"^1\.body\.1 \(PReLU\) has no Kiln equivalent$"),
    (Attention, (8,), r"^attn \(MultiheadAttention\) at test_export\.py:\d+ has no Kiln equivalent$"),
    (Mul, (8,), r"^_operator\.mul at test_export\.py:\d+ has no Kiln equivalent$"),
    (Shared, (8,), r"^fc \(Linear\) at test_export\.py:\d+ is called a second time \(first at test_export\.py:\d+\); "
                   r"Kiln gives every layer its own weights$"),
    (CrossBranch, (8,), r"^torch\.relu at test_export\.py:\d+ feeds two branches below the value where they split; "
                        r"each of Kiln's branches starts from that value, so a value shared between branches has no "
                        r"Kiln equivalent$"),
    (AlwaysDrops, (8,), r"^torch\.nn\.functional\.dropout at test_export\.py:\d+ drops in eval mode too "
                        r"\(training=True\); write training=self\.training$"),
    (BatchCat, (8,), r"^torch\.cat at test_export\.py:\d+ concatenates along dim 0, the batch dim; Kiln "
                     r"concatenates per-sample dims$"),
    (Broadcast, (8,), r"^_operator\.add at test_export\.py:\d+ adds \[3, 8\] to \[3, 1\] \(broadcasting\); "
                      r"Kiln's Sum and Residual add values of one shape$"),
    (Branchy, (8,), r"^Branchy\.forward cannot be traced by torch\.fx .*; Kiln needs straight-line code$"),
    (Transpose, (8,), r"^Tensor\.transpose at test_export\.py:\d+ has no Kiln equivalent$"),
    (Tuple, (8,), r"^Tuple\.forward returns tuple; Kiln's network has one output tensor$"),
    (lambda: nn.Sequential(nn.ReLU(), ScaledLinear(8, 8)), (8,), r"^_operator\.mul at test_export\.py:\d+ has no Kiln "
                                                                 r"equivalent$"),
    (lambda: nn.Sequential(nn.Softmax()), (8,), r"^0 \(Softmax\) has no dim .*; give it one$"),
    (lambda: nn.Sequential(nn.Linear(8, 8).double()), (8,),
     r"^0 \(Linear\): weight is torch\.float64; Kiln's is torch\.float32 \(convert the module first\)$"),
    (lambda: kiln_nn.Sum(*[nn.Identity()] * 9), (8,), r"^Sum has 9 branches; Kiln takes at most 8 \(nest them\)$"),
]


def test_refusals():
    for make, shape, pattern in REFUSALS:
        module = make()
        try:
            kiln_export.export(module, torch.randn((2,) + shape), out_dir=tempfile.mkdtemp())
        except ExportError as e:
            assert re.search(pattern, str(e)), (type(module).__name__, str(e), pattern)
            print(f"refused: {e}")
        else:
            raise AssertionError(f"{type(module).__name__} was exported")
    print(f"refusals: {len(REFUSALS)} modules refused, each with its message")


# ---- the command line ---------------------------------------------------------------------------------------------
MODEL_PY = '''
import torch
from torch import nn
import traced_modules


def residual():
    return traced_modules.make("residual_mlp")[0]


def with_optimizer():
    m = traced_modules.make("nerf_skip")[0]
    return m, torch.optim.SGD(m.parameters(), lr=0.1)


def bilinear():
    return traced_modules.make("bilinear_head")[0]


def not_a_module():
    return 3
'''


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), HERE]))
    done = subprocess.run([sys.executable, "-m", "kiln_export", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)
    return done.returncode, done.stdout + done.stderr


def test_cli():
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "model.py")
        with open(model, "w") as f:
            f.write(MODEL_PY)
        out = os.path.join(d, "include")
        for factory, inputs, name in (("residual", ["24"], "net"), ("with_optimizer", ["15"], "nerf"),
                                      ("bilinear", ["6", "5"], "two")):
            args = [f"{model}:{factory}", "--name", name, "--out", out]
            for i in inputs:
                args += ["--input", i]
            rc, text = run_cli(*args)
            assert rc == 0 and f"wrote {out}/{name}.hpp" in text, text
            assert os.path.isfile(os.path.join(out, f"{name}.safetensors")), text
        assert "kiln::input<6>,\n    kiln::input<5>," in open(os.path.join(out, "two.hpp")).read()
        for args, message in (
                ([f"{model}:not_a_module", "--input", "4"], "not_a_module() returned int, not a torch.nn.Module"),
                ([f"{model}:missing", "--input", "4"], "has no function missing"),
                ([f"{d}/nowhere.py:f", "--input", "4"], "nowhere.py: no such file"),
                ([f"{model}:residual", "--input", "24,x"], "--input '24,x': the per-sample shape"),
                ([f"{model}:residual", "--input", "24", "--name", "9net"], "name '9net' is not a C++ identifier"),
                ([f"{model}:residual", "--input", "25"],
                 "ResidualMLP does not run on the example inputs: RuntimeError: mat1 and mat2")):
            rc, text = run_cli(*args)
            assert rc == 1 and message in text and "Traceback" not in text, (args, text)
    print("cli: three factories exported, six mistakes refused")


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"goldens": test_goldens, "refusals": test_refusals, "cli": test_cli}[sys.argv[1]]()
