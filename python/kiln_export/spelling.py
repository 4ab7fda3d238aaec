"""How Kiln spells a PyTorch module: the C++ declaration of the same layer (dsl/include/kiln/dsl/layers/).

The module must already be in Kiln's shape (canonical.py): torch.nn layers Kiln has, torch.nn.Sequential and the
reference modules of kiln_nn. Only hyperparameters that differ from torch's defaults are written, as Kiln's
designated initialisers (nn::BatchNorm1d<8>{.eps = 0.001f}).
"""
from torch import nn

import kiln_nn

from .errors import ExportError

# The element-wise activations without hyperparameters, by their torch class (Kiln's names are torch's).
PLAIN = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.Hardswish, nn.Identity)


def float_literal(v):
    """A Python float as a C++ float literal that rounds to the same float32 (0.2 -> 0.2f, 1e-05 -> 1e-05f)."""
    return repr(float(v)) + "f"


def _initialisers(fields):
    """Designated initialisers for the non-default members, in declaration order ("" when all are defaults)."""
    return "{" + ", ".join(f".{k} = {v}" for k, v in fields) + "}"


def _sizes(shape):
    return ", ".join(str(int(d)) for d in shape)


def _batchnorm(m, ns):
    f = []
    if m.eps != 1e-5:
        f.append(("eps", float_literal(m.eps)))
    if m.momentum is None:
        f.append(("momentum", "std::nullopt"))
    elif m.momentum != 0.1:
        f.append(("momentum", float_literal(m.momentum)))
    if not m.affine:
        f.append(("affine", "false"))
    if not m.track_running_stats:
        f.append(("track_running_stats", "false"))
    return f"{ns}BatchNorm1d<{m.num_features}>{_initialisers(f)}"


def _layernorm(m, ns):
    f = []
    if m.eps != 1e-5:
        f.append(("eps", float_literal(m.eps)))
    if not m.elementwise_affine:
        f.append(("elementwise_affine", "false"))
    elif getattr(m, "bias", None) is None:  # kiln_nn.LayerNorm(bias=False), or torch>=2.1's
        f.append(("bias", "false"))
    return f"{ns}LayerNorm<{_sizes(m.normalized_shape)}>{_initialisers(f)}"


def _rmsnorm(m, ns):
    f = []
    if m.eps is not None:
        f.append(("eps", float_literal(m.eps)))
    if not m.elementwise_affine:
        f.append(("elementwise_affine", "false"))
    if getattr(m, "eps_placement", "inside_sqrt") == "added_to_rms":
        f.append(("eps_placement", f"{ns}RMSNormEps::added_to_rms"))
    shape = (m.normalized_shape,) if isinstance(m.normalized_shape, int) else m.normalized_shape
    return f"{ns}RMSNorm<{_sizes(shape)}>{_initialisers(f)}"


def _softplus(m, ns):
    f = []
    if m.beta != 1:
        f.append(("beta", float_literal(m.beta)))
    if m.threshold != 20:
        f.append(("threshold", float_literal(m.threshold)))
    return f"{ns}Softplus{_initialisers(f)}"


def _rmsnorm_types():
    return (kiln_nn.RMSNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def layer(m, ns="nn::"):
    """The declaration of one leaf layer; ExportError (no path yet: the caller adds it) when Kiln has none. The
    type must be torch's own class, not a subclass: a subclass may compute something else in its forward."""
    t = type(m)
    if t is nn.Linear:
        return f"{ns}Linear<{m.in_features}, {m.out_features}{'' if m.bias is not None else ', false'}>{{}}"
    if t is nn.Bilinear:
        return (f"{ns}Bilinear<{m.in1_features}, {m.in2_features}, {m.out_features}"
                f"{'' if m.bias is not None else ', false'}>{{}}")
    if t in PLAIN:
        return f"{ns}{t.__name__}{{}}"
    if t is nn.GELU:
        return f"{ns}GELU{{.approximate = {ns}GELUApproximate::tanh}}" if m.approximate == "tanh" else f"{ns}GELU{{}}"
    if t is nn.LeakyReLU:
        slope = [("negative_slope", float_literal(m.negative_slope))] if m.negative_slope != 0.01 else []
        return f"{ns}LeakyReLU{_initialisers(slope)}"
    if t is nn.ELU:
        return f"{ns}ELU{_initialisers([('alpha', float_literal(m.alpha))] if m.alpha != 1.0 else [])}"
    if t is nn.Softplus:
        return _softplus(m, ns)
    if t in (nn.Softmax, nn.LogSoftmax):
        return f"{ns}{t.__name__}<{m.dim}>{{}}"
    if t is nn.Flatten:
        if (m.start_dim, m.end_dim) == (1, -1):
            return f"{ns}Flatten{{}}"
        return f"{ns}Flatten<{m.start_dim}, {m.end_dim}>{{}}"
    if t is nn.Unflatten:
        return f"{ns}Unflatten<{m.dim}, {_sizes(m.unflattened_size)}>{{}}"
    if t is nn.Dropout:
        return f"{ns}Dropout{{{float_literal(m.p)}}}"
    if t is nn.BatchNorm1d:
        return _batchnorm(m, ns)
    if t in (nn.LayerNorm, kiln_nn.LayerNormNoBias):
        return _layernorm(m, ns)
    if t in _rmsnorm_types():
        return _rmsnorm(m, ns)
    raise ExportError(f"({t.__name__}) has no Kiln equivalent")


def is_sequential(m):
    """torch's Sequential, or kiln_nn's (two inputs); a subclass with a forward of its own is not."""
    return type(m) in (nn.Sequential, kiln_nn.Sequential)


def item(m, ns="nn::"):
    """The declaration of a layer, an nn.Sequential or a composite, on one line."""
    if is_sequential(m):
        return f"{ns}Sequential{{" + ", ".join(item(c, ns) for c in m) + "}"
    if isinstance(m, kiln_nn.Residual):
        return f"{ns}Residual{{" + ", ".join(item(c, ns) for c in m.body) + "}"
    if isinstance(m, kiln_nn.Sum):
        return f"{ns}Sum{{" + ", ".join(item(b, ns) for b in m.branches) + "}"
    if isinstance(m, kiln_nn.Concat):
        dim = [] if m.dim == -1 else [f"{ns}dim<{m.dim}>"]
        return f"{ns}Concat{{" + ", ".join(dim + [item(b, ns) for b in m.branches]) + "}"
    return layer(m, ns)


def inputs(shapes):
    return [f"kiln::input<{_sizes(s)}>" for s in shapes]


def network(model, shapes, ns="nn::"):
    """kiln::nn::Sequential{kiln::input<...>, items...} on one line: `model` is a Sequential in Kiln's shape and
    `shapes` the per-sample shapes of its inputs."""
    return "kiln::nn::Sequential{" + ", ".join(inputs(shapes) + [item(c, ns) for c in model]) + "}"


def network_lines(model, shapes, ns="kiln::nn::", width=110):
    """The same declaration laid out for a header: one item a line, a composite broken over lines when it is
    longer than `width`."""
    def lay(m, indent):
        flat = item(m, ns)
        if len(flat) + indent <= width or not (is_sequential(m) or isinstance(m, (kiln_nn.Residual, kiln_nn.Sum,
                                                                                  kiln_nn.Concat))):
            return [" " * indent + flat]
        head = flat[:flat.index("{") + 1]
        children = (list(m) if is_sequential(m) else list(m.body) if isinstance(m, kiln_nn.Residual)
                    else list(m.branches))
        lines = [" " * indent + head]
        if isinstance(m, kiln_nn.Concat) and m.dim != -1:
            lines.append(" " * (indent + 4) + f"{ns}dim<{m.dim}>,")
        for k, c in enumerate(children):
            sub = lay(c, indent + 4)
            if k + 1 < len(children):
                sub[-1] += ","
            lines += sub
        lines[-1] += "}"
        return lines

    lines = ["kiln::nn::Sequential{"]
    entries = [[" " * 4 + s] for s in inputs(shapes)] + [lay(c, 4) for c in model]
    for k, e in enumerate(entries):
        if k + 1 < len(entries):
            e[-1] += ","
        lines += e
    lines[-1] += "}"
    return lines
