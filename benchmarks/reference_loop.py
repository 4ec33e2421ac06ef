"""The reference recipe's training loop (the "LSTM from zero to hero" tutorial's style) at our
module's config, the baseline for the training benchmark.

A plain loop over a ``TensorDataset`` of a left-padded int64 matrix, ``nn.Embedding -> nn.LSTM
(batch_first=True) -> dropout -> nn.Linear``, the logit at the last position (the real last token:
padding is on the left), the hidden state initialised per batch, ``clip_grad_norm_(5)`` and Adam.
The tutorial used sigmoid + ``BCELoss`` on every position's output and carried the hidden state
across batches; at equal config with our module this loop uses ``BCEWithLogitsLoss`` on the last
position and a fresh state per batch, as our module does.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class SentimentNet(nn.Module):
    """The tutorial's network at our module's config: the same layers, created in the same order
    as ``RNNClassifier`` (so a seed gives the same initial weights), read at the last position."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, hidden_dim: int, n_layers=1, drop_prob=0.3
    ):
        super().__init__()
        self.n_layers, self.hidden_dim = n_layers, hidden_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        dropout = drop_prob if n_layers > 1 else 0.0
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, n_layers, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(drop_prob)
        self.fc = nn.Linear(hidden_dim, 1)

    def init_hidden(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.parameters())
        shape = (self.n_layers, batch_size, self.hidden_dim)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    def forward(self, x: torch.Tensor, hidden) -> torch.Tensor:
        lstm_out, hidden = self.lstm(self.embedding(x), hidden)
        return self.fc(self.dropout(lstm_out[:, -1])).squeeze(-1)


def train_loop(
    model: SentimentNet,
    features: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    clip: float = 5.0,
    seed: int = 0,
) -> dict:
    """The tutorial's loop; returns the wall and CPU seconds spent in the epochs, the samples and
    the real tokens seen."""
    data = TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, shuffle=True, batch_size=batch_size, generator=generator)
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    seconds, cpu_seconds, samples = 0.0, 0.0, 0
    for _ in range(epochs):
        start, cpu = time.perf_counter(), time.process_time()
        for inputs, target in loader:
            h = model.init_hidden(len(inputs))  # per batch (the tutorial carried it over)
            model.zero_grad()
            output = model(inputs, h)
            loss = criterion(output, target.float())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            samples += len(inputs)
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu
    tokens = epochs * int(np.count_nonzero(features))  # pads are 0, every other id a token
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "samples": samples, "tokens": tokens}


@torch.no_grad()
def accuracy(model: SentimentNet, features: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    x = torch.from_numpy(features)
    logits = torch.cat([model(b, model.init_hidden(len(b))) for b in x.split(256)])
    return float(((logits > 0).long().numpy() == labels).mean())
