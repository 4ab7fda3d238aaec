#!/usr/bin/env python3
"""Generate Kiln's PyTorch training goldens: gradients, losses and optimizer trajectories.

Usage (from the repo root; see regenerate.sh; run make_goldens.py first, its data/ is read here):
    PYTHONPATH=$BUILD/pydeps /usr/bin/python3 tests/golden/make_train_goldens.py \
        tests/golden/data tests/golden/train_data

Writes (see README.md, "Training goldens"):
  grad_<case>.safetensors   one per case of make_goldens.CASES: input and parameter gradients
  losses.safetensors        CrossEntropyLoss / MSELoss values and gradients
  optim_<config>.safetensors  20 full-batch optimizer steps per config
Everything is computed by PyTorch in float64 from float32 values and stored rounded to float32
(num_batches_tracked and class targets stay int64).  One CPU thread, so the output is deterministic.
"""
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402  (the cases, Kiln's Philox mask, header canonicalisation)

GRAD_BATCH_SIZES = (3, 64)
# Space rule: a gradient with more than BIG elements (net_seed's 1.weight [256, 784], net_bilinear's
# 0.weight [32, 64, 48]) is stored only as train.grad.<name>.b64; the omitted keys are listed in the
# metadata `omitted`.
BIG = 1 << 16
GRAD_SEED_BASE = 3000       # grad_out of case i: torch.Generator seeded with 3000 + i
LOSS_SEED = 4000
NET_A_SEED = 5150   # chosen so clip_grad_norm_(max_norm=0.5) clips the first 6 of 20 steps (norm 0.85 -> 0.29)
NET_B_SEED = 5001
OPTIM_DROPOUT_SEED = mg.DROPOUT_SEED_BASE + 1000   # 12345670000000001000 (> 2^63)
OPTIM_STEPS = 20


# --------------------------------------------------------------------------
# Kiln's dropout mask, differentiable (make_goldens.KilnDropout goes through numpy)
# --------------------------------------------------------------------------
class KilnDropoutAG(nn.Module):
    """Train mode: x * where(keep, float32(1/(1-p)), 0) with Kiln's Philox keep-mask (a product, as PyTorch's: a
    dropped NaN stays NaN, in the gradient too); eval: identity.
    step=None: the Philox step is the number of train-mode forwards this module has done before."""

    def __init__(self, p, seed, stream, step=0):
        super().__init__()
        self.p, self.seed, self.stream = p, seed, stream
        self.fixed_step = step
        self.calls = 0

    def forward(self, x):
        if not self.training:
            return x
        step = self.calls if self.fixed_step is None else self.fixed_step
        self.calls += 1
        keep = mg.kiln_dropout_keep(x.numel(), self.p, self.seed, self.stream, step)
        keep = torch.from_numpy(keep.reshape(tuple(x.shape)))
        scale = float(np.float32(1) / (np.float32(1) - np.float32(self.p))) if self.p != 1 else 0.0
        return x * torch.where(keep, torch.tensor(scale, dtype=x.dtype), torch.zeros((), dtype=x.dtype))

    def extra_repr(self):
        return f"p={self.p}, stream={self.stream}, step={self.fixed_step}"


def replace_dropouts_ag(model, seed, step=0):
    """make_goldens.replace_dropouts (the same stream numbering), with the autograd-friendly module."""
    return mg.replace_dropouts(model, seed, step, module=KilnDropoutAG)


def f32(t):
    return mg.tensor_out(t)


INT64_KEYS = ("targets", "y")  # plus *num_batches_tracked


def save(path, tensors, meta):
    save_file(tensors, path, metadata=meta)
    mg.canonicalize_header(path)
    verify(path, tensors, meta)


def verify(path, tensors, meta):
    """Read back: same keys, bit-identical tensors, float32 except int64 targets / num_batches_tracked."""
    back = load_file(path)
    assert set(back) == set(tensors), (path, set(back) ^ set(tensors))
    for k, v in tensors.items():
        b = back[k]
        assert mg.identical(b, v), (path, k)
        want = torch.int64 if k in INT64_KEYS or k.endswith("num_batches_tracked") else torch.float32
        assert b.dtype == want, (path, k, b.dtype)
        if k.endswith("num_batches_tracked"):
            assert b.shape == torch.Size([]), (path, k)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    assert hdr["__metadata__"] == meta, path


def read_meta(path):
    with safe_open(path, "pt") as f:
        return f.metadata()


# --------------------------------------------------------------------------
# 1. Gradients of every forward case
# --------------------------------------------------------------------------
def has_batchnorm(model):
    return any(isinstance(m, nn.BatchNorm1d) for m in model.modules())


def case_grads(model, inputs, grad_out, train, dropout_seed):
    """backward of (model(*inputs) * grad_out).sum() in float64 from a fresh copy.
    Returns (output, {input/param name: float64 grad}) or raises ValueError."""
    m = copy.deepcopy(model).double()
    replace_dropouts_ag(m, dropout_seed, step=0)
    m.train(train)
    xs = [x.double().requires_grad_() for x in inputs]
    out = m(*xs)
    (out * grad_out.double()).sum().backward()
    g = {f"in{i}": x.grad for i, x in enumerate(xs)}
    for name, p in m.named_parameters():
        g[name] = p.grad
    return out.detach(), g


def fd_check(model, inputs, grad_out, train, dropout_seed, grads, name):
    """Central finite difference of L = (out * grad_out).sum() along a random direction (float64)."""
    gen = torch.Generator().manual_seed(77)
    m = copy.deepcopy(model).double()
    replace_dropouts_ag(m, dropout_seed, step=0)
    m.train(train)
    params = dict(m.named_parameters())
    xs = [x.double() for x in inputs]
    dirs = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in grads.items()}
    h = 1e-6

    def L(sign):
        with torch.no_grad():
            for k, p in params.items():
                p.add_(dirs[k], alpha=sign * h)
            xx = [x + sign * h * dirs[f"in{i}"] for i, x in enumerate(xs)]
            val = (m(*xx) * grad_out.double()).sum().item()
            for k, p in params.items():
                p.sub_(dirs[k], alpha=sign * h)
        return val

    fd = (L(1) - L(-1)) / (2 * h)
    an = sum((grads[k] * dirs[k]).sum().item() for k in grads)
    rel = abs(fd - an) / max(1.0, abs(an))
    assert rel <= 1e-6, (name, train, fd, an)
    return rel


def make_grad_case(idx, name, builder, shapes, datadir, outdir):
    src = os.path.join(datadir, f"{name}.safetensors")
    data = load_file(src)
    smeta = read_meta(src)
    dropout_seed = int(smeta["dropout_seed"])
    assert dropout_seed == mg.DROPOUT_SEED_BASE + idx
    model = builder()
    sd_keys = list(model.state_dict().keys())
    model.load_state_dict({k: data[k] for k in sd_keys})
    model.eval()
    assert mg.kiln_network(model, shapes) == smeta["kiln_network"], name
    modes = ["train"] + (["eval"] if has_batchnorm(model) else [])
    gen = torch.Generator().manual_seed(GRAD_SEED_BASE + idx)
    tensors = {}
    meta = {
        "case": name,
        "dropout_seed": smeta["dropout_seed"],
        "kiln_network": smeta["kiln_network"],
        "grad_seed": str(GRAD_SEED_BASE + idx),
        "batch_sizes": ",".join(str(b) for b in GRAD_BATCH_SIZES),
        "modes": ",".join(modes),
    }
    max_fd = 0.0
    omitted = []
    for B in GRAD_BATCH_SIZES:
        inputs = [data[f"in{i}.b{B}"] for i in range(len(shapes))]
        with torch.no_grad():
            shape = mg.forward(copy.deepcopy(model).eval(), inputs).shape
        grad_out = torch.randn(shape, generator=gen, dtype=torch.float32)
        tensors[f"grad_out.b{B}"] = grad_out
        for mode in modes:
            try:
                out, g = case_grads(model, inputs, grad_out, mode == "train", dropout_seed)
            except ValueError as e:
                meta[f"{mode}_error.b{B}"] = str(e)
                continue
            # the rebuilt module reproduces the stored forward golden exactly
            # (data/ omits train.out when train == eval, and eval.out when eval is the identity)
            ref = data.get(f"{mode}.out.b{B}")
            if ref is None:
                ref = data.get(f"eval.out.b{B}", data[f"in0.b{B}"])
            assert mg.identical(f32(out), ref), (name, mode, B)
            for k, v in g.items():
                assert v is not None and v.dtype == torch.float64, (name, k)
                key = f"{mode}.grad.{k}.b{B}"
                if v.numel() > BIG and (mode, B) != ("train", GRAD_BATCH_SIZES[-1]):
                    omitted.append(key)
                else:
                    tensors[key] = f32(v)
            # A finite difference is no check across a kink (gen_kinks puts inputs exactly on them; autograd's
            # gradient there is the reference, as PyTorch defines it) nor at NaN and Inf (gen_nonfinite, and
            # gen_nonfinite_spread).
            if B == 3 and mg.CASES[idx][3] not in (mg.gen_kinks, mg.gen_nonfinite, mg.gen_nonfinite_spread):
                max_fd = max(max_fd, fd_check(model, inputs, grad_out, mode == "train", dropout_seed, g, name))
    if omitted:
        meta["omitted"] = ",".join(omitted)
    path = os.path.join(outdir, f"grad_{name}.safetensors")
    save(path, tensors, meta)
    return path, tensors, meta, max_fd


def gradcheck_some(datadir):
    """torch.autograd.gradcheck (float64) on a few small cases, inputs and parameters together."""
    from torch.nn.utils.stateless import functional_call
    picks = ["bilinear", "batchnorm_3d", "layernorm_2d", "rmsnorm_tutorial", "softmax_3d_dim1",
             "net_mixed", "net_two_dropouts", "net_rank3", "net_graph_bn_dropout", "net_graph_concat_dims"]
    for idx, (name, builder, shapes, _) in enumerate(mg.CASES):
        if name not in picks:
            continue
        data = load_file(os.path.join(datadir, f"{name}.safetensors"))
        model = builder()
        model.load_state_dict({k: data[k] for k in model.state_dict()})
        for train in (True, False):
            m = copy.deepcopy(model).double()
            replace_dropouts_ag(m, mg.DROPOUT_SEED_BASE + idx, step=0)
            m.train(train)
            names = [k for k, _ in m.named_parameters()]
            pvals = [p.detach().clone().requires_grad_() for _, p in m.named_parameters()]
            xs = [data[f"in{i}.b3"].double().requires_grad_() for i in range(len(shapes))]
            nin = len(xs)

            def fn(*args):
                return functional_call(m, dict(zip(names, args[nin:])), tuple(args[:nin]))

            assert torch.autograd.gradcheck(fn, tuple(xs + pvals), eps=1e-6, atol=1e-6, rtol=1e-5), name
    return picks


# --------------------------------------------------------------------------
# 2. Losses
# --------------------------------------------------------------------------
def make_losses(outdir):
    torch.manual_seed(LOSS_SEED)
    logits = torch.randn(64, 10) * 2
    targets = torch.randint(0, 10, (64,))
    float_targets = torch.randn(64, 10)
    tensors = {"logits": logits, "targets": targets, "float_targets": float_targets}
    specs = {
        "ce_mean": lambda x: F.cross_entropy(x, targets),
        "ce_sum": lambda x: F.cross_entropy(x, targets, reduction="sum"),
        "ce_smooth": lambda x: F.cross_entropy(x, targets, label_smoothing=0.1),
        "mse_mean": lambda x: F.mse_loss(x, float_targets.double()),
        "mse_sum": lambda x: F.mse_loss(x, float_targets.double(), reduction="sum"),
    }
    for key, fn in specs.items():
        x = logits.double().requires_grad_()
        loss = fn(x)
        (g,) = torch.autograd.grad(loss, x)
        assert loss.shape == torch.Size([])
        tensors[f"{key}.loss"] = f32(loss)
        tensors[f"{key}.grad"] = f32(g)

    # independent closed forms (float64)
    x = logits.double()
    logp = torch.log_softmax(x, 1)
    p = logp.exp()
    onehot = F.one_hot(targets, 10).double()
    nll = -(logp * onehot).sum(1)
    n, C, eps = 64, 10, 0.1
    ref = {
        "ce_mean": (nll.mean(), (p - onehot) / n),
        "ce_sum": (nll.sum(), p - onehot),
        "ce_smooth": ((1 - eps) * nll.mean() + eps / C * (-logp.sum(1)).mean(),
                      (p - ((1 - eps) * onehot + eps / C)) / n),
        "mse_mean": (((x - float_targets.double()) ** 2).mean(), 2 * (x - float_targets.double()) / x.numel()),
        "mse_sum": (((x - float_targets.double()) ** 2).sum(), 2 * (x - float_targets.double())),
    }
    for key, (l, g) in ref.items():
        assert torch.equal(f32(l), tensors[f"{key}.loss"]) or \
            abs(l.item() - tensors[f"{key}.loss"].item()) <= 1e-6 * abs(l.item()), key
        assert torch.allclose(f32(g), tensors[f"{key}.grad"], rtol=1e-6, atol=1e-9), key
    meta = {
        "ce_mean": "CrossEntropyLoss()",
        "ce_sum": "CrossEntropyLoss(reduction='sum')",
        "ce_smooth": "CrossEntropyLoss(label_smoothing=0.1)",
        "mse_mean": "MSELoss() against float_targets",
        "mse_sum": "MSELoss(reduction='sum') against float_targets",
        "seed": str(LOSS_SEED),
    }
    path = os.path.join(outdir, "losses.safetensors")
    save(path, tensors, meta)
    return path, tensors, meta


# --------------------------------------------------------------------------
# 3. Optimizers
# --------------------------------------------------------------------------
def network_a():
    torch.manual_seed(NET_A_SEED)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    X = torch.randn(32, 10)
    y = torch.randint(0, 3, (32,))
    return model, X, y


def network_b():
    torch.manual_seed(NET_B_SEED)
    model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    mg.perturb(model)   # BatchNorm weight/bias/running stats off their defaults; num_batches_tracked = 7
    X = torch.randn(32, 20)
    y = torch.randint(0, 3, (32,))
    return model, X, y


CE = "CrossEntropyLoss(reduction='mean', label_smoothing=0.0)"


def SGD(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                maximize=False)


def ADAM(lr, weight_decay=0.0):
    return dict(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay, amsgrad=False, maximize=False)


# (name, network, optimizer class, its kwargs (all of them), loss, clip max_norm, scheduler)
OPTIM_CONFIGS = [
    ("sgd_plain", "A", "SGD", SGD(0.1), "ce", None, None),
    ("sgd_momentum", "A", "SGD", SGD(0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3), "ce", None, None),
    ("sgd_nesterov", "A", "SGD", SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), "ce", None, None),
    ("adam", "A", "Adam", ADAM(1e-2, weight_decay=1e-3), "ce", None, None),
    ("adamw", "A", "AdamW", ADAM(1e-2, weight_decay=1e-2), "ce", None, None),
    ("adam_clip_cosine", "A", "Adam", ADAM(1e-2), "ce", 0.5, ("CosineAnnealingLR", dict(T_max=20, eta_min=0))),
    ("sgd_steplr", "A", "SGD", SGD(0.1, momentum=0.9), "ce", None, ("StepLR", dict(step_size=5, gamma=0.5))),
    ("ce_smoothing", "A", "SGD", SGD(0.1), "ce_smooth", None, None),
    ("ce_sum", "A", "SGD", SGD(0.01), "ce_sum", None, None),
    ("mse", "A", "SGD", SGD(0.1), "mse", None, None),
    ("bn_dropout", "B", "SGD", SGD(0.1, momentum=0.9), "ce", None, None),
]

LOSSES = {
    "ce": (lambda: nn.CrossEntropyLoss(), CE),
    "ce_smooth": (lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
                  "CrossEntropyLoss(reduction='mean', label_smoothing=0.1)"),
    "ce_sum": (lambda: nn.CrossEntropyLoss(reduction="sum"), "CrossEntropyLoss(reduction='sum', label_smoothing=0.0)"),
    "mse": (lambda: nn.MSELoss(), "MSELoss(reduction='mean') against y_float = one_hot(y, 3)"),
}


def _kw(d):
    return ", ".join(f"{k}={v!r}" for k, v in d.items())


def config_string(opt_name, kw, loss, clip, sched):
    parts = [f"{opt_name}({_kw(kw)})", LOSSES[loss][1]]
    parts.append(f"clip_grad_norm_(parameters, max_norm={clip!r}, norm_type=2.0) before each opt.step()"
                 if clip is not None else "no clipping")
    parts.append(f"{sched[0]}({_kw(sched[1])}).step() after each opt.step()" if sched else "no scheduler")
    parts.append(f"{OPTIM_STEPS} full-batch steps; float64")
    return "; ".join(parts)


def run_config(cfg):
    name, net, opt_name, kw, loss, clip, sched = cfg
    model, X, y = (network_a if net == "A" else network_b)()
    init = {k: f32(v) for k, v in model.state_dict().items()}
    model.load_state_dict(init)
    model.double()
    if net == "B":
        assert replace_dropouts_ag(model, OPTIM_DROPOUT_SEED, step=None) == 1
    Xd = X.double()
    target = F.one_hot(y, 3).double() if loss == "mse" else y
    crit = LOSSES[loss][0]()
    opt = getattr(torch.optim, opt_name)(model.parameters(), **kw)
    scheduler = getattr(torch.optim.lr_scheduler, sched[0])(opt, **sched[1]) if sched else None
    losses, lrs, norms = [], [], []
    step1 = None
    for k in range(OPTIM_STEPS):
        model.train()
        opt.zero_grad()
        out = crit(model(Xd), target)
        losses.append(out.item())
        out.backward()
        if clip is not None:
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip).item())
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
        if k == 0:
            step1 = {kk: v.detach().clone() for kk, v in model.state_dict().items()}
    final = {kk: v.detach().clone() for kk, v in model.state_dict().items()}
    drops = [m for m in model.modules() if isinstance(m, KilnDropoutAG)]
    assert all(m.calls == OPTIM_STEPS for m in drops)  # one train forward per step: Philox step 0..19
    return dict(model=model, X=X, y=y, init=init, losses=losses, lrs=lrs, norms=norms,
                step1=step1, final=final)


def reference_trajectory(cfg, res):
    """Independent re-implementation of the update rules (formulas in README / the report) using
    torch only for the loss gradient; must track torch.optim to ~1e-12."""
    name, net, opt_name, kw, loss, clip, sched = cfg
    model, X, y = (network_a if net == "A" else network_b)()
    model.load_state_dict(res["init"])
    model.double()
    if net == "B":
        replace_dropouts_ag(model, OPTIM_DROPOUT_SEED, step=None)
    Xd = X.double()
    target = F.one_hot(y, 3).double() if loss == "mse" else y
    crit = LOSSES[loss][0]()
    params = list(model.parameters())
    state = [dict(buf=None, m=torch.zeros_like(p), v=torch.zeros_like(p)) for p in params]
    base_lr = kw["lr"]
    lr = base_lr
    for k in range(OPTIM_STEPS):
        # lr used by this step
        if sched and sched[0] == "StepLR":
            if k > 0 and k % sched[1]["step_size"] == 0:
                lr = lr * sched[1]["gamma"]
        elif sched and sched[0] == "CosineAnnealingLR":
            T = sched[1]["T_max"]
            if k > 0:
                lr = (1 + math.cos(math.pi * k / T)) / (1 + math.cos(math.pi * (k - 1) / T)) * lr
            assert abs(lr - base_lr * (1 + math.cos(math.pi * k / T)) / 2) < 1e-15
        assert lr == res["lrs"][k], (name, k, lr, res["lrs"][k])
        model.train()
        for p in params:
            p.grad = None
        l = crit(model(Xd), target)
        assert l.item() == res["losses"][k] or abs(l.item() - res["losses"][k]) < 1e-12, (name, k)
        l.backward()
        gs = [p.grad.detach().clone() for p in params]
        if clip is not None:
            total = torch.sqrt(sum((g * g).sum() for g in gs))
            coef = min(clip / (total.item() + 1e-6), 1.0)
            gs = [g * coef for g in gs]
            assert abs(total.item() - res["norms"][k]) < 1e-12
        with torch.no_grad():
            for p, g, st in zip(params, gs, state):
                wd = kw["weight_decay"]
                if opt_name == "SGD":
                    d = g + wd * p
                    if kw["momentum"]:
                        st["buf"] = d.clone() if st["buf"] is None else \
                            kw["momentum"] * st["buf"] + (1 - kw["dampening"]) * d
                        d = d + kw["momentum"] * st["buf"] if kw["nesterov"] else st["buf"]
                    p -= lr * d
                else:
                    b1, b2 = kw["betas"]
                    t = k + 1
                    if opt_name == "AdamW":
                        p *= 1 - lr * wd
                    else:
                        g = g + wd * p
                    st["m"] = b1 * st["m"] + (1 - b1) * g
                    st["v"] = b2 * st["v"] + (1 - b2) * g * g
                    denom = st["v"].sqrt() / math.sqrt(1 - b2 ** t) + kw["eps"]
                    p -= (lr / (1 - b1 ** t)) * st["m"] / denom
    for kk, v in model.state_dict().items():
        ref = res["final"][kk]
        if v.dtype.is_floating_point:
            err = (v - ref).abs().max().item()
            assert err < 1e-10, (name, kk, err)
        else:
            assert torch.equal(v, ref), (name, kk)


def make_optim(cfg, outdir):
    name, net, opt_name, kw, loss, clip, sched = cfg
    res = run_config(cfg)
    again = run_config(cfg)
    assert all(torch.equal(res["final"][k], again["final"][k]) for k in res["final"]), name
    reference_trajectory(cfg, res)
    assert res["losses"][-1] < res["losses"][0], (name, res["losses"])
    tensors = {"X": f32(res["X"])}
    if loss == "mse":
        tensors["y_float"] = F.one_hot(res["y"], 3).float()
    else:
        tensors["y"] = res["y"]
    tensors["loss"] = f32(torch.tensor(res["losses"], dtype=torch.float64))
    tensors["lr"] = f32(torch.tensor(res["lrs"], dtype=torch.float64))
    if clip is not None:  # both branches of the clamp are exercised
        assert any(n > clip for n in res["norms"]) and any(n < clip for n in res["norms"]), res["norms"]
        tensors["total_norm"] = f32(torch.tensor(res["norms"], dtype=torch.float64))
    for prefix, sd in (("init", res["init"]), ("step1", res["step1"]), ("final", res["final"])):
        for k, v in sd.items():
            tensors[f"{prefix}.{k}"] = f32(v)
    shapes = [(20,)] if net == "B" else [(10,)]
    fresh = (network_a if net == "A" else network_b)()[0]
    meta = {
        "config": config_string(opt_name, kw, loss, clip, sched),
        "network": str(fresh),
        "kiln_network": mg.kiln_network(fresh, shapes),
        "steps": str(OPTIM_STEPS),
        "data_seed": str(NET_B_SEED if net == "B" else NET_A_SEED),
    }
    if net == "B":
        meta["dropout_seed"] = str(OPTIM_DROPOUT_SEED)
    path = os.path.join(outdir, f"optim_{name}.safetensors")
    save(path, tensors, meta)
    return path, tensors, meta, res


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    datadir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "data")
    outdir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "train_data")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    assert torch.get_default_dtype() == torch.float32
    mg.self_test_philox()

    # the differentiable mask equals make_goldens' numpy one
    x = torch.randn(7, 13, dtype=torch.float64)
    for p in (0.0, 0.3, 0.5, 1.0):
        d = KilnDropoutAG(p, mg.DROPOUT_SEED_BASE + 5, 2, 3)
        assert torch.equal(d(x), mg.kiln_dropout(x, p, mg.DROPOUT_SEED_BASE + 5, 2, 3)), p

    total = 0
    for idx, (name, builder, shapes, _) in enumerate(mg.CASES):
        path, tensors, meta, fd = make_grad_case(idx, name, builder, shapes, datadir, outdir)
        size = os.path.getsize(path)
        total += size
        errs = sorted(k for k in meta if k.endswith(tuple(f"_error.b{b}" for b in GRAD_BATCH_SIZES)))
        print(f"grad_{name:22s} {len(tensors):3d} tensors {size:8d} B  modes={meta['modes']:10s} "
              f"fd_rel_err={fd:.1e}" + (f"  errors: {', '.join(errs)}" if errs else ""))
    print("gradcheck ok:", ", ".join(gradcheck_some(datadir)))

    path, tensors, meta = make_losses(outdir)
    total += os.path.getsize(path)
    print("losses:", ", ".join(f"{k}={tensors[k].item():.6f}" for k in sorted(tensors) if k.endswith(".loss")))

    for cfg in OPTIM_CONFIGS:
        path, tensors, meta, res = make_optim(cfg, outdir)
        total += os.path.getsize(path)
        print(f"optim_{cfg[0]:17s} {os.path.getsize(path):6d} B  loss {res['losses'][0]:.5f} -> "
              f"{res['losses'][-1]:.5f}  lr[-1]={res['lrs'][-1]:.6g}")
    print(f"total {total} B")


if __name__ == "__main__":
    main()
