"""PyTorch modules written as classes with a forward of their own, as users write them: the exporter traces them
with torch.fx (python/kiln_export/trace.py). Used by test_export.py and export_traced.py."""
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    """Residual blocks in a ModuleList, added to the running value: two nn::Residual."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(24, 32)
        self.blocks = nn.ModuleList([Block(32, 64), Block(32, 64)])
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return F.log_softmax(self.head(h), dim=-1)


class NerfSkip(nn.Module):
    """NeRF's skip: the input concatenated back in halfway (nn::Concat with an Identity branch)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(15, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32 + 15, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.fc2(torch.relu(self.fc1(x))))
        h = torch.cat([x, h], dim=-1)
        return self.out(F.softplus(self.fc3(h), beta=2.0))


class TwoPath(nn.Module):
    """Two paths summed with the input (nn::Sum), a functional LayerNorm and Linear with the module's parameters,
    F.dropout that follows the module's mode, a view that unflattens and a flatten."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Linear(16, 16)
        self.down = nn.Linear(16, 4)
        self.up = nn.Linear(4, 16)
        self.norm_weight = nn.Parameter(torch.rand(16) + 0.5)
        self.norm_bias = nn.Parameter(torch.randn(16) * 0.1)
        self.head_weight = nn.Parameter(torch.randn(3, 16) * 0.3)
        self.head_bias = nn.Parameter(torch.randn(3) * 0.1)

    def forward(self, x):
        y = self.wide(x) + self.up(torch.tanh(self.down(x))) + x
        y = F.layer_norm(y, (16,), self.norm_weight, self.norm_bias, 1e-5)
        y = F.dropout(y, 0.25, training=self.training)
        y = F.silu(y.view(y.size(0), 4, 4)).flatten(1)
        return F.linear(y, self.head_weight, self.head_bias)


class NormBranches(nn.Module):
    """A BatchNorm1d in one branch of a concatenation along a middle dim, a Residual around a Linear over the last
    dim, on [N, 3, 8] samples."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.mix = nn.Linear(8, 8)
        self.res = nn.Linear(8, 8)
        self.head = nn.Linear(6 * 8, 2)

    def forward(self, x):
        h = torch.cat([self.bn(x), F.elu(self.mix(x))], dim=1)
        h = h + self.res(h)
        return self.head(torch.flatten(h, 1))


class BilinearHead(nn.Module):
    """Two inputs read by a leading Bilinear."""

    def __init__(self):
        super().__init__()
        self.bilinear = nn.Bilinear(6, 5, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, a, b):
        return self.fc(F.leaky_relu(self.bilinear(a, b), 0.2))


# name -> (factory, per-sample input shapes)
MODULES = {
    "residual_mlp": (ResidualMLP, [(24,)]),
    "nerf_skip": (NerfSkip, [(15,)]),
    "two_path": (TwoPath, [(16,)]),
    "norm_branches": (NormBranches, [(3, 8)]),
    "bilinear_head": (BilinearHead, [(6,), (5,)]),
}


def make(name, seed=0):
    """The module, seeded, with BatchNorm statistics moved off their defaults by one train-mode pass."""
    factory, shapes = MODULES[name]
    torch.manual_seed(seed)
    model = factory()
    with torch.no_grad():
        model.train()
        model(*[torch.randn((16,) + s) for s in shapes])
    return model.eval(), shapes
