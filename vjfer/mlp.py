"""Building blocks shared by the encoder and the probe, so neither imports the other's package."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """fc1 -> exact GELU -> fc2: the MLP of jepa's ViT blocks and of its attentive pooler."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
