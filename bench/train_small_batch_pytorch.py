"""Small-batch training in PyTorch (Debian's torch 1.13.1): the anchor for bench/train_small_batch.cpp.

The same 64-128-64-10 MLP with LayerNorm, Tanh and Dropout, batch 32, AdamW, one thread, on the same synthetic
data set (bench/small_batch_data.hpp: the same formula, computed here in float64 and rounded to float32).
Run through bench/train_vs_pytorch.sh, which sets OpenBLAS up as bench/run.sh does. Prints the median epoch time.
"""
import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

SAMPLES, FEATURES, CLASSES, BATCH = 16384, 64, 10, 32


def make_data():
    i = np.arange(SAMPLES, dtype=np.float64)[:, None]
    f = np.arange(FEATURES, dtype=np.float64)[None, :]
    c = (np.arange(SAMPLES) % CLASSES).astype(np.float64)[:, None]
    h = np.sin(12.9898 * i + 78.233 * f) * 43758.5453
    x = np.sin(1.7 * c + 0.9 * f) + 0.8 * (h - np.floor(h)) - 0.4
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy((np.arange(SAMPLES) % CLASSES).astype(np.int64))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = make_data()
    model = nn.Sequential(nn.Linear(64, 128), nn.LayerNorm(128), nn.Tanh(), nn.Dropout(0.1),
                          nn.Linear(128, 64), nn.LayerNorm(64), nn.Tanh(), nn.Dropout(0.1), nn.Linear(64, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    steps = (SAMPLES + BATCH - 1) // BATCH
    times = []
    model.train()
    for _ in range(a.epochs):
        perm = torch.randperm(SAMPLES)
        start = time.perf_counter()
        for s in range(steps):
            i = perm[s * BATCH:(s + 1) * BATCH]
            opt.zero_grad()
            loss = loss_fn(model(x[i]), y[i])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"pytorch small-batch epoch ({steps} steps of {BATCH}): median {med:.4f} s, {med / steps * 1e6:.1f} us/step, "
          f"last loss {loss.item():.4f} (epochs: {', '.join(f'{t:.4f}' for t in times)})")


if __name__ == "__main__":
    main()
