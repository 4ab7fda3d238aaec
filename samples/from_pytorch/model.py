"""A PyTorch model as a user writes one: a class with its own forward (a residual block), trained in PyTorch.
The README's "Bring a PyTorch model" exports it with `python3 -m kiln_export model.py:make_model --input 24`."""
import torch
import torch.nn.functional as F
from torch import nn


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(24, 64)
        self.norm = nn.LayerNorm(64)
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 64)
        self.head = nn.Linear(64, 3)

    def forward(self, x):
        h = F.relu(self.inp(x))
        h = h + self.fc2(F.gelu(self.fc1(self.norm(h))))
        return self.head(h)


def make_model():
    """The model after 200 steps of Adam on a smooth function of 24 inputs (a second or so on one core)."""
    torch.manual_seed(0)
    model = Regressor()
    mix = torch.randn(24, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        x = torch.randn(64, 24)
        loss = F.mse_loss(model(x), torch.sin(x @ mix))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
