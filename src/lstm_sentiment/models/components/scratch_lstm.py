"""An LSTM written out from its gate equations, interchangeable with ``torch.nn.LSTM``.

Parameter names, shapes, gate order (i, f, g, o: the row blocks of ``weight_ih``/``weight_hh``)
and initialisation are PyTorch's, so state dicts load either way with ``strict=True``.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RECORDED_GATES = ("input", "forget", "output")


def lstm_step(
    x_proj: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """One time step; ``x_proj = W_ih x_t + b_ih + b_hh``. Returns ``h_t, c_t, (i, f, o)``::

    i   = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)    input gate
    f   = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)    forget gate
    g   = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)    candidate cell
    o   = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)    output gate
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
    """
    pre_i, pre_f, pre_g, pre_o = (x_proj + h @ weight_hh.T).chunk(4, dim=-1)
    i = torch.sigmoid(pre_i)
    f = torch.sigmoid(pre_f)
    g = torch.tanh(pre_g)
    o = torch.sigmoid(pre_o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c, (i, f, o)


def _project_input(x: Tensor, weight_ih: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None):
    # Both biases are constant over time, so they are added once here instead of at every step.
    proj = F.linear(x, weight_ih, bias_ih)
    return proj if bias_hh is None else proj + bias_hh


class ScratchLSTMCell(nn.Module):
    """Drop-in for ``nn.LSTMCell``: ``forward(x, (h, c)) -> (h', c')``; ``hx=None`` means zeros."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is None:
            zeros = x.new_zeros(*x.shape[:-1], self.hidden_size)
            hx = (zeros, zeros)
        x_proj = _project_input(x, self.weight_ih, self.bias_ih, self.bias_hh)
        h, c, _ = lstm_step(x_proj, hx[0], hx[1], self.weight_hh)
        return h, c

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class ScratchLSTM(nn.Module):
    """Drop-in for ``nn.LSTM`` (no ``proj_size``), plus optional gate statistics.

    ``forward(input, hx=None, lengths=None)`` returns ``output, (h_n, c_n)`` exactly like
    ``nn.LSTM``. With ``lengths`` (shape ``(batch,)``) it behaves like ``nn.LSTM`` on
    ``pack_padded_sequence(input, lengths)`` followed by ``pad_packed_sequence(...,
    total_length=seq_len)``: states stop updating after a sequence's end, the reverse direction
    starts at its last real step, ``h_n``/``c_n`` are the states at the last real step and
    padded outputs are zero.

    With ``record_gates=True`` each forward replaces ``self.gate_stats`` (detached tensors) with,
    for every layer ``k`` and gate in input/forget/output::

        "layer{k}/{gate}"           0-dim mean activation over batch, real time steps and units
        "layer{k}/{gate}_per_unit"  shape (num_directions * hidden_size,), same mean per unit
                                    (forward-direction units first, as in ``output``)

    Padded steps (``t >= lengths[b]``) are excluded. With recording off it stays empty.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        record_gates: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout only acts between layers; it does nothing with num_layers=1", stacklevel=2
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.record_gates = record_gates
        self.gate_stats: dict[str, Tensor] = {}

        # Registration order matches nn.LSTM, so parameters() lines up one to one as well.
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = self._suffix(layer, direction)
                self.register_parameter(
                    "weight_ih" + sfx, nn.Parameter(torch.empty(4 * hidden_size, layer_in))
                )
                self.register_parameter(
                    "weight_hh" + sfx, nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
                )
                if bias:
                    self.register_parameter(
                        "bias_ih" + sfx, nn.Parameter(torch.empty(4 * hidden_size))
                    )
                    self.register_parameter(
                        "bias_hh" + sfx, nn.Parameter(torch.empty(4 * hidden_size))
                    )
        self.reset_parameters()

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self, layer: int, direction: int):
        sfx = self._suffix(layer, direction)
        return (
            getattr(self, "weight_ih" + sfx),
            getattr(self, "weight_hh" + sfx),
            getattr(self, "bias_ih" + sfx, None),
            getattr(self, "bias_hh" + sfx, None),
        )

    def forward(
        self,
        input: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        unbatched = input.dim() == 2
        if unbatched:  # nn.LSTM semantics: (seq, feature) input, (layers*dirs, hidden) states
            input = input.unsqueeze(1)
            hx = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        x = input.transpose(0, 1) if self.batch_first and not unbatched else input
        seq_len, batch = x.shape[:2]

        state_shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if hx is None:
            h0 = c0 = x.new_zeros(state_shape)
        else:
            h0, c0 = hx
            if h0.shape != state_shape or c0.shape != state_shape:
                raise ValueError(
                    f"expected hx of shape {tuple(state_shape)}, got "
                    f"{tuple(h0.shape)} and {tuple(c0.shape)}"
                )

        # mask[t, b, 0] is True on real steps; it freezes states and zeroes outputs on padding.
        mask = None
        if lengths is not None:
            steps = torch.arange(seq_len, device=x.device)
            mask = (steps[:, None] < lengths.to(x.device).reshape(1, -1))[..., None]

        stats: dict[str, Tensor] = {}
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs, sums = [], []
            for direction in range(self.num_directions):
                idx = layer * self.num_directions + direction
                out, h, c, gate_sums = self._run_direction(
                    x,
                    h0[idx],
                    c0[idx],
                    *self._weights(layer, direction),
                    mask,
                    reverse=direction == 1,
                )
                outputs.append(out)
                sums.append(gate_sums)
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, dim=-1) if self.bidirectional else outputs[0]
            if self.record_gates:
                count = mask.sum() if mask is not None else x.new_tensor(seq_len * batch)
                per_unit = torch.cat(sums, dim=-1) / count.clamp(min=1)
                for name, values in zip(RECORDED_GATES, per_unit, strict=True):
                    stats[f"layer{layer}/{name}"] = values.mean()
                    stats[f"layer{layer}/{name}_per_unit"] = values
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        self.gate_stats = stats

        output = x.transpose(0, 1) if self.batch_first and not unbatched else x
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if unbatched:
            output, h_n, c_n = output.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def _run_direction(self, x, h, c, weight_ih, weight_hh, bias_ih, bias_hh, mask, reverse):
        """Run one layer in one direction over ``x`` (seq, batch, feature)."""
        # One matmul for all steps. unbind (not x_proj[t]) so backward stacks the step gradients
        # once instead of materialising a full-size zero tensor per step.
        x_proj = _project_input(x, weight_ih, bias_ih, bias_hh).unbind(0)
        seq_len = x.shape[0]
        gate_sums = None
        if self.record_gates:
            gate_sums = x.new_zeros(len(RECORDED_GATES), self.hidden_size)
        outputs: list[Tensor | None] = [None] * seq_len
        for t in reversed(range(seq_len)) if reverse else range(seq_len):
            h_new, c_new, gates = lstm_step(x_proj[t], h, c, weight_hh)
            if mask is None:
                h, c = h_new, c_new
                outputs[t] = h
            else:
                h = torch.where(mask[t], h_new, h)
                c = torch.where(mask[t], c_new, c)
                outputs[t] = h_new * mask[t]
            if gate_sums is not None:
                stacked = torch.stack(gates).detach()  # (3, batch, hidden)
                if mask is not None:
                    stacked = stacked * mask[t]
                gate_sums += stacked.sum(dim=1)
        return torch.stack(outputs), h, c, gate_sums

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.record_gates:
            s += ", record_gates=True"
        return s
