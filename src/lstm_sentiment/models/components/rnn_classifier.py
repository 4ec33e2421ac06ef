"""The network: Embedding -> recurrent layers -> pooling over time -> dropout -> Linear -> a logit.

``SentimentModule`` builds it from ``model.net`` (``conf/model/lstm.yaml``), whose keys are this
constructor's arguments one to one; a checkpoint's ``hyper_parameters["net"]`` rebuilds it alone.

``encode`` gives every token's top-layer state (both directions, aligned to the token), ``pool``
turns those states into one vector per review, ``forward`` classifies it. Each layer runs each
direction as its own one-way module, the backward one on every review reversed within its length,
so both directions start at a real token and no state that is read has seen a pad: the result
does not depend on how a batch is padded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstm_sentiment.data.vocab import PAD_ID, UNK_ID
from lstm_sentiment.models.components.scratch_lstm import ScratchLSTM

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELLS = ("torch", "scratch")  # torch's modules, or ScratchLSTM (the gate equations written out)
# What one review's vector is made of; several can be joined with "+" (e.g. "max+mean").
POOLINGS = ("last", "max", "mean", "attention")


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row of ``x`` [B, T, ...] within its first ``lengths[b]`` steps; pads stay."""
    steps = torch.arange(x.size(1), device=x.device)
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


def pooling_parts(pooling: str) -> list[str]:
    """``"max+mean"`` -> ``["max", "mean"]``, each checked."""
    parts = pooling.split("+")
    if any(p not in POOLINGS for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(
            f"pooling must be one of {POOLINGS} or several joined by '+', got {pooling!r}"
        )
    return parts


class RNNClassifier(nn.Module):
    """An LSTM (or, for comparison, a GRU or plain RNN: ``rnn_type``) that reads each review from
    its first to its last real token and classifies a pooled state.

    Every call starts from a zero state (the reference recipe carried the state of one shuffled
    batch into the next) and takes any batch size (it built a fixed-size state that broke on the
    last partial batch).

    - ``pooling``: ``last`` (the state after the last token; backward direction: after the
      first), ``max`` or ``mean`` over every token's state, ``attention`` (a learned weighting of
      them), or several joined by ``+``, concatenated.
    - ``word_dropout``: in training, each token becomes ``_UNK`` with this probability (the model
      learns to read around words it does not know); ``embedding_dropout``: dropout on the word
      vectors; ``dropout``: between recurrent layers and before the classifier.
    - ``pack=True`` runs each direction on ``pack_padded_sequence``; ``pack=False`` on the padded
      batch (exact as well, since a direction's states before a review's end never see a pad; and
      2-10x faster than packing on CPU). ``cell="scratch"`` runs ``ScratchLSTM``, the gate
      equations written out, which can record gate statistics.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        rnn_type: str,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        pooling: str,
        dropout: float,
        embedding_dropout: float,
        word_dropout: float,
        pack: bool,
        cell: str,
        record_gates: bool,
    ):
        super().__init__()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, got {rnn_type!r}")
        if cell not in CELLS or (cell == "scratch" and rnn_type != "lstm"):
            raise ValueError(f"cell must be torch, or scratch with rnn_type=lstm; got {cell!r}")
        if record_gates and cell != "scratch":
            raise ValueError("record_gates needs cell=scratch (nn.LSTM does not expose its gates)")
        self.rnn_type, self.cell, self.pack, self.record_gates = rnn_type, cell, pack, record_gates
        self.bidirectional, self.hidden_size = bidirectional, hidden_size
        self.pooling, self.word_dropout = pooling_parts(pooling), word_dropout
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        width = hidden_size * (2 if bidirectional else 1)

        def one_way(input_size: int) -> nn.Module:
            if cell == "scratch":
                return ScratchLSTM(
                    input_size, hidden_size, batch_first=True, record_gates=record_gates
                )
            return RNN_TYPES[rnn_type](input_size, hidden_size, batch_first=True)

        # rnn[layer][0] reads left to right, rnn[layer][1] right to left
        self.rnn = nn.ModuleList(
            nn.ModuleList(
                one_way(embedding_dim if layer == 0 else width) for _ in range(1 + bidirectional)
            )
            for layer in range(num_layers)
        )
        self.layer_dropout = nn.Dropout(dropout if num_layers > 1 else 0.0)
        self.attention = nn.Linear(width, 1) if "attention" in self.pooling else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * len(self.pooling), 1)

    # -- reading ------------------------------------------------------------------------------

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every token's top-layer state [B, T, H * directions]; pads' states are never read."""
        lengths = lengths.to(ids.device)
        if self.training and self.word_dropout > 0:
            dropped = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = ids.masked_fill(dropped & (ids != PAD_ID), UNK_ID)
        x = self.embedding_dropout(self.embedding(ids))
        for layer, directions in enumerate(self.rnn):
            if layer:
                x = self.layer_dropout(x)
            states = [self._run(directions[0], x, lengths)]
            if self.bidirectional:
                backward = self._run(directions[1], reverse_within_length(x, lengths), lengths)
                states.append(reverse_within_length(backward, lengths))
            x = torch.cat(states, dim=-1)
        return x

    def _run(self, module: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One layer in one direction, left to right over ``x``: its state at each step."""
        if self.cell == "scratch":  # stops at each review's length itself (for its gate means)
            return module(x, lengths=lengths)[0]
        if self.pack:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(module(packed)[0], batch_first=True, total_length=x.size(1))[
                0
            ]
        return module(x)[0]

    def pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One vector per review [B, H * directions * len(pooling)] from ``encode``'s states."""
        lengths = lengths.to(states.device)
        return torch.cat([self._pool(how, states, lengths) for how in self.pooling], dim=-1)

    def _pool(self, how: str, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        real = (torch.arange(states.size(1), device=states.device) < lengths[:, None])[..., None]
        if how == "max":
            return states.masked_fill(~real, float("-inf")).amax(dim=1)
        if how == "mean":
            return (states * real).sum(dim=1) / lengths[:, None]
        if how == "attention":
            return (self.attention_weights(states, lengths)[..., None] * states).sum(dim=1)
        # last: size(0), not len(), so an exported (traced) graph keeps its batch size dynamic
        last = states[torch.arange(states.size(0), device=states.device), lengths - 1]
        if self.bidirectional:  # the backward direction ends on the first token
            last = torch.cat([last[:, : self.hidden_size], states[:, 0, self.hidden_size :]], -1)
        return last

    def attention_weights(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Softmax over each review's real tokens [B, T] (pads get 0)."""
        real = torch.arange(states.size(1), device=states.device) < lengths[:, None]
        scores = self.attention(states).squeeze(-1).masked_fill(~real, float("-inf"))
        return scores.softmax(dim=1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One logit per review [B]."""
        return self.fc(self.dropout(self.pool(self.encode(ids, lengths), lengths))).squeeze(-1)

    @property
    def gate_stats(self) -> dict[str, torch.Tensor]:
        """With ``cell=scratch, record_gates=True``: the last forward's gate means per layer,
        ``layer{k}/{gate}`` (over both directions) and ``layer{k}/{gate}_per_unit`` (forward
        direction's units first)."""
        stats = {}
        for layer, directions in enumerate(self.rnn):
            recorded = [getattr(module, "gate_stats", {}) for module in directions]
            for key in recorded[0]:
                if key.endswith("_per_unit"):
                    per_unit = torch.cat([r[key] for r in recorded])
                    gate = key.removesuffix("_per_unit").split("/")[1]
                    stats[f"layer{layer}/{gate}_per_unit"] = per_unit
                    stats[f"layer{layer}/{gate}"] = per_unit.mean()
        return stats

    # -- explaining ---------------------------------------------------------------------------

    def token_contributions(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each token's share of the logit [B, T] (0 at pads), in eval mode.

        With ``max``, ``mean`` and ``attention`` pooling the logit is a sum over tokens plus the
        bias, so the shares are exact: under ``max`` a token owns the units whose maximum it
        holds (weight times value), under ``mean`` it adds ``w . h_t / length``, under
        ``attention`` ``a_t * (w . h_t)``. ``last`` pooling reads one state, which no sum splits,
        so there a token's share is what that part of the logit loses when the token is replaced
        by ``_UNK`` (occlusion). Shares plus ``fc.bias`` equal the logit exactly unless ``last``
        is part of the pooling.
        """
        if self.training:
            raise RuntimeError("token_contributions needs eval mode (no dropout)")
        lengths = lengths.to(ids.device)
        states = self.encode(ids, lengths)
        width = states.size(-1)
        real = torch.arange(ids.size(1), device=ids.device) < lengths[:, None]
        shares = states.new_zeros(ids.shape)
        for part, how in enumerate(self.pooling):
            weight = self.fc.weight[0, part * width : (part + 1) * width]
            if how == "max":
                masked = states.masked_fill(~real[..., None], float("-inf"))
                owner = torch.zeros_like(states).scatter_(1, masked.argmax(1, keepdim=True), 1.0)
                shares += (owner * states * weight).sum(-1)
            elif how == "mean":
                shares += (states @ weight) * real / lengths[:, None]
            elif how == "attention":
                shares += self.attention_weights(states, lengths) * (states @ weight)
            else:
                shares += self._occlusion(ids, lengths, weight)
        return shares * real

    def _occlusion(self, ids: torch.Tensor, lengths: torch.Tensor, weight: torch.Tensor):
        """How much ``weight . last state`` drops when each token becomes _UNK: the T occluded
        copies of each review run as one batch."""
        batch, steps = ids.shape
        copies = ids.repeat_interleave(steps + 1, dim=0).view(batch, steps + 1, steps)
        position = torch.arange(steps, device=ids.device)
        copies[:, position + 1, position] = UNK_ID  # copy 0 whole, copy t+1 without token t
        flat, flat_lengths = copies.view(-1, steps), lengths.repeat_interleave(steps + 1)
        last = self._pool("last", self.encode(flat, flat_lengths), flat_lengths) @ weight
        last = last.view(batch, steps + 1)
        return last[:, :1] - last[:, 1:]

    def per_token_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """The logit after each token [B, T] of a one-directional, ``last``-pooled network: the
        many-to-many reading. Position ``t`` is what ``forward`` gives for the review cut there."""
        if self.bidirectional or self.pooling != ["last"]:
            raise ValueError("the logit after each token needs a one-directional last-state net")
        lengths = torch.full((ids.size(0),), ids.size(1), device=ids.device)
        return self.fc(self.dropout(self.encode(ids, lengths))).squeeze(-1)
