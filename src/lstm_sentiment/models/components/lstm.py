"""The network: Embedding -> recurrent layers -> dropout -> Linear -> one logit per review."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from lstm_sentiment.data.vocab import PAD_ID
from lstm_sentiment.models.components.scratch_lstm import ScratchLSTM

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# the single-layer, single-direction ops behind those modules (same weight layout)
RNN_OPS = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row of ``x`` [B, T, ...] within its first ``lengths[b]`` steps; pads stay."""
    steps = torch.arange(x.size(1), device=x.device)
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


class LSTMClassifier(nn.Module):
    """Reads each review up to its real last token and classifies from the state there.

    Every call starts from a zero state (the reference recipe carried the state of one shuffled
    batch into the next) and takes any batch size (it built a fixed-size state that broke on the
    last partial batch). ``pack=True`` runs packed sequences, so pads are never read; ``pack=False``
    runs the padded batch and gathers each review's output at ``length - 1``, which is exact for a
    one-directional network because the pads come after that position; a bidirectional one then
    runs its backward direction on each review reversed within its length (also exact).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.3,
        bidirectional: bool = False,
        rnn_type: str = "lstm",
        pack: bool = True,
        cell: str = "torch",
        record_gates: bool = False,
    ):
        super().__init__()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, got {rnn_type!r}")
        if cell not in ("torch", "scratch") or (cell == "scratch" and rnn_type != "lstm"):
            raise ValueError(f"cell must be torch, or scratch with rnn_type=lstm; got {cell!r}")
        if record_gates and cell != "scratch":
            raise ValueError("record_gates needs cell=scratch (nn.LSTM does not expose its gates)")
        self.rnn_type, self.pack, self.bidirectional = rnn_type, pack, bidirectional
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        rnn_cls = ScratchLSTM if cell == "scratch" else RNN_TYPES[rnn_type]
        self.rnn = rnn_cls(
            embedding_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            **({"record_gates": record_gates} if cell == "scratch" else {}),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), 1)

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The top layer's state at each review's last real token: [B, H * directions]."""
        x = self.embedding(ids)
        if self.cell == "scratch":
            # the gate equations written out; it stops each review at its length itself
            _, (h_n, _) = self.rnn(x, lengths=lengths.to(ids.device))
            return torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.bidirectional else h_n[-1]
        if self.bidirectional and not self.pack:
            return self._bidirectional_unpacked(x, lengths.to(ids.device))
        if self.pack:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, state = self.rnn(packed)
            h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
            if self.bidirectional:
                return torch.cat([h_n[-2], h_n[-1]], dim=-1)
            return h_n[-1]
        out, _ = self.rnn(x)
        # size(0), not len(): an exported (traced) graph then keeps its batch size dynamic
        return out[torch.arange(ids.size(0), device=ids.device), lengths.to(ids.device) - 1]

    def _bidirectional_unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions without packing, exactly: nn.LSTM's backward direction would start on
        the pads, so each layer runs its two directions one way each, the backward one on every
        review reversed within its own length. Faster than packing on CPU, and exportable."""
        rnn, out = self.rnn, x
        for layer in range(rnn.num_layers):
            if layer:
                out = nn.functional.dropout(out, rnn.dropout, self.training)
            forward_out = self._one_direction(out, layer, "")
            backward_out = self._one_direction(
                reverse_within_length(out, lengths), layer, "_reverse"
            )
            out = torch.cat([forward_out, reverse_within_length(backward_out, lengths)], dim=-1)
        rows = torch.arange(x.size(0), device=x.device)  # not len(x): see features()
        hidden = rnn.hidden_size
        # forward state after the last real token; backward state after reading back to token 0
        return torch.cat([out[rows, lengths - 1, :hidden], out[:, 0, hidden:]], dim=-1)

    def _one_direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        weights = [getattr(self.rnn, f"{name}_l{layer}{suffix}") for name in names]
        h0 = x.new_zeros(1, x.size(0), self.rnn.hidden_size)
        hx = (h0, h0) if self.rnn_type == "lstm" else h0
        return RNN_OPS[self.rnn_type](x, hx, weights, True, 1, 0.0, self.training, False, True)[0]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(ids, lengths))).squeeze(-1)

    def per_token_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """The logit after each token, [B, T]: the many-to-many reading of the network.

        Position ``t`` is exactly what ``forward`` gives for the review cut after token ``t``.
        """
        if self.bidirectional:
            raise ValueError("per-token probabilities need a one-directional network")
        out, _ = self.rnn(self.embedding(ids))
        return self.fc(self.dropout(out)).squeeze(-1)
