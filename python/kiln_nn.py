"""PyTorch reference modules for Kiln's composites (dsl/include/kiln/dsl/composites.hpp).

PyTorch has no modules for a skip connection or for parallel branches. These are the ones Kiln's are named
after: build the same network in PyTorch from them and its state_dict() keys are exactly Kiln's, so weights
move between the two (Model::load_state_dict, safetensors files) with no renaming.

    Kiln                                   PyTorch (this module)              state_dict keys
    nn::Residual{layers...}                Residual(*layers)                  "<i>.body.<j>.weight"
    nn::Sum{branches...}                   Sum(*branches)                     "<i>.branches.<k>.weight" (one layer)
    nn::Concat{branches...}                Concat(*branches)                  "<i>.branches.<k>.<j>.weight"
    nn::Concat{nn::dim<1>, branches...}    Concat(*branches, dim=1)             (a Sequential branch)
    nn::Identity{}                         Identity()
    nn::Sequential{layers...}              torch.nn.Sequential(*layers)       "<i>.<j>.weight"
    nn::Sequential{input<A>, input<B>,     Sequential(*layers) (this module:   as torch.nn.Sequential's
                   nn::Bilinear..., ...}   its first layer takes both inputs)

And the layers torch 1.13 lacks (same keys and numbers as torch's where torch has them):

    nn::RMSNorm<D...>{...}                 RMSNorm(shape, eps=None, ...)      "<i>.weight" (torch>=2.4: nn.RMSNorm)
    nn::LayerNorm<D...>{.bias = false}     LayerNorm(shape, bias=False)       "<i>.weight" (torch>=2.1: nn.LayerNorm)

A branch is a layer, a torch.nn.Sequential or another composite; they nest to any depth, as in Kiln. Every
branch sees the composite's input. Dims count the batch dim, as torch.cat and Kiln's Softmax<Dim> do.

Example (a NeRF-style skip connection):

    import torch.nn as nn
    from kiln_nn import Concat, Identity
    net = nn.Sequential(Concat(Identity(), nn.Sequential(nn.Linear(63, 128), nn.ReLU())),
                        nn.Linear(191, 128), nn.ReLU(), nn.Linear(128, 4))
    # keys: 0.branches.1.0.weight, 0.branches.1.0.bias, 1.weight, 1.bias, 3.weight, 3.bias
    # Kiln: nn::Sequential{kiln::input<63>, nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<63, 128>{},
    #       nn::ReLU{}}}, nn::Linear<191, 128>{}, nn::ReLU{}, nn::Linear<128, 4>{}}

Only torch is needed. docs/SEMANTICS.md ("Composition beyond a line") gives the semantics.
"""
import torch
from torch import nn

__all__ = ["Residual", "Sum", "Concat", "Identity", "Sequential", "RMSNorm", "LayerNorm"]

# nn::Identity{}: y = x, no parameters (the skip branch of a Concat, an empty-looking Residual body).
Identity = nn.Identity


class Residual(nn.Module):
    """y = x + body(x), with body = torch.nn.Sequential(*layers): Kiln's nn::Residual{layers...}.

    state_dict keys are "body.<j>.<name>" here, so "<i>.body.<j>.weight" for the i-th layer of a Sequential,
    exactly Kiln's. The body must map the input's shape to itself."""

    def __init__(self, *layers):
        super().__init__()
        if not layers:
            raise ValueError("Residual needs a body: Residual(*layers)")
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


class Sum(nn.Module):
    """y = branches[0](x) + branches[1](x) + ..., summed left to right: Kiln's nn::Sum{branches...}.

    The branches are an nn.ModuleList named `branches`: state_dict keys "branches.<k>.<name>" for a single-layer
    branch and "branches.<k>.<j>.<name>" for a torch.nn.Sequential branch ("<i>.branches.<k>..." inside a
    Sequential), exactly Kiln's. All branches must give one shape."""

    def __init__(self, *branches):
        super().__init__()
        if not branches:
            raise ValueError("Sum needs at least one branch: Sum(*branches)")
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out


class Concat(nn.Module):
    """y = torch.cat([b(x) for b in branches], dim): Kiln's nn::Concat{branches...} (dim=-1) or
    nn::Concat{nn::dim<D>, branches...} (dim=D; dims count the batch dim, as torch.cat's do).

    The branches are an nn.ModuleList named `branches`, keyed as Sum's ("<i>.branches.<k>.weight",
    "<i>.branches.<k>.<j>.weight"), exactly Kiln's. The branches' outputs must agree on every dim but `dim`,
    and `dim` may not be the batch dim."""

    def __init__(self, *branches, dim=-1):
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch: Concat(*branches, dim=-1)")
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Sequential(nn.Sequential):
    """torch.nn.Sequential whose first layer may take two inputs (a Bilinear): Kiln's nn::Sequential with two
    kiln::input markers. Same state_dict keys and repr as torch.nn.Sequential."""

    def forward(self, *inputs):
        x = None
        for i, m in enumerate(self):
            x = m(*inputs) if i == 0 else m(x)
        return x

    def _get_name(self):
        return "Sequential"


def _shape_tuple(shape):
    return (shape,) if isinstance(shape, int) else tuple(shape)


class RMSNorm(nn.Module):
    """Kiln's nn::RMSNorm<D...>: x / sqrt(mean(x^2) + eps) * weight over the trailing dims `normalized_shape`, as
    torch>=2.4's nn.RMSNorm (eps=None: float32's machine epsilon). eps_placement="added_to_rms" gives
    x / (sqrt(mean(x^2)) + eps) * weight instead (Kiln's nn::RMSNormEps::added_to_rms)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, eps_placement="inside_sqrt"):
        super().__init__()
        if eps_placement not in ("inside_sqrt", "added_to_rms"):
            raise ValueError(f"RMSNorm: eps_placement is 'inside_sqrt' or 'added_to_rms', not {eps_placement!r}")
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.eps_placement = eps_placement
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        eps = torch.finfo(torch.float32).eps if self.eps is None else self.eps
        dims = tuple(range(-len(self.normalized_shape), 0))
        ms = x.pow(2).mean(dims, keepdim=True)
        if self.eps_placement == "added_to_rms":
            y = x / (torch.sqrt(ms) + eps)
        else:
            y = x * torch.rsqrt(ms + eps)
        if self.weight is not None:
            y = y * self.weight
        return y

    def extra_repr(self):
        s = f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        return s + (f", eps_placement='{self.eps_placement}'" if self.eps_placement != "inside_sqrt" else "")


class LayerNormNoBias(nn.Module):
    """nn.LayerNorm(shape, bias=False) of torch>=2.1 (a `weight`, no `bias`), for older torch."""

    def __init__(self, normalized_shape, eps=1e-5):
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = True
        self.weight = nn.Parameter(torch.ones(self.normalized_shape))

    def forward(self, x):
        return torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight, None, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine=True, bias=False"


def LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
    """Kiln's nn::LayerNorm<D...>{...}: torch's nn.LayerNorm, with bias=False on any torch version."""
    if bias:
        return nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)
    if not elementwise_affine:
        raise ValueError("LayerNorm: bias=False needs elementwise_affine=True (there is no bias to drop otherwise)")
    return LayerNormNoBias(normalized_shape, eps)
