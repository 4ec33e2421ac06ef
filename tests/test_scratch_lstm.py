"""ScratchLSTM / ScratchLSTMCell against torch.nn.LSTM / nn.LSTMCell: values, gradients, stats."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

try:
    from lstm_sentiment.models.components.scratch_lstm import ScratchLSTM, ScratchLSTMCell
except ModuleNotFoundError:  # package not installed: use the src layout directly
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lstm_sentiment.models.components.scratch_lstm import ScratchLSTM, ScratchLSTMCell

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These tensors are tiny: extra intra-op threads only add stalls on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def close(actual, expected, dtype=torch.float64):
    torch.testing.assert_close(actual, expected, atol=TOL[dtype], rtol=0)


def make_pair(*args, dtype=torch.float64, seed=0, **kwargs):
    torch.manual_seed(seed)
    ref = nn.LSTM(*args, **kwargs).to(dtype)
    scratch = ScratchLSTM(*args, **kwargs).to(dtype)
    scratch.load_state_dict(ref.state_dict(), strict=True)
    return ref, scratch


def run_and_grad(module, x, hx, cotangents, lengths=None):
    """Forward, backprop a fixed random linear functional of all outputs, return values + grads."""
    x = x.detach().clone().requires_grad_()
    hx = None if hx is None else tuple(s.detach().clone().requires_grad_() for s in hx)
    module.zero_grad(set_to_none=True)
    if lengths is None:
        out, (h_n, c_n) = module(x, hx)
    elif isinstance(module, nn.LSTM):
        batch_first = module.batch_first
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, (h_n, c_n) = module(packed, hx)
        total = x.shape[1 if batch_first else 0]
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=total)
    else:
        out, (h_n, c_n) = module(x, hx, lengths=lengths)
    loss = sum((t * g).sum() for t, g in zip((out, h_n, c_n), cotangents, strict=True))
    loss.backward()
    grads = {"input": x.grad}
    if hx is not None:
        grads.update(h0=hx[0].grad, c0=hx[1].grad)
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return (out, h_n, c_n), grads


def check_against_torch(ref, scratch, x, hx, dtype, lengths=None):
    with torch.no_grad():
        out, (h_n, c_n) = scratch(x, hx, lengths=lengths)
    cot = tuple(torch.randn_like(t) for t in (out, h_n, c_n))
    ref_vals, ref_grads = run_and_grad(ref, x, hx, cot, lengths)
    vals, grads = run_and_grad(scratch, x, hx, cot, lengths)
    for name, a, b in zip(("output", "h_n", "c_n"), vals, ref_vals, strict=True):
        assert a.shape == b.shape, name
        close(a, b, dtype)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert grads[name] is not None, name
        close(grads[name], ref_grads[name], dtype)


def inputs(lstm: nn.LSTM, batch: int, seq_len: int, given_state: bool):
    """Random input (and initial states) shaped for ``lstm``'s configuration."""
    dtype = lstm.weight_ih_l0.dtype
    x = torch.randn(batch, seq_len, lstm.input_size, dtype=dtype)
    x = x if lstm.batch_first else x.transpose(0, 1).contiguous()
    shape = (lstm.num_layers * (2 if lstm.bidirectional else 1), batch, lstm.hidden_size)
    hx = (torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)) if given_state else None
    return x, hx


@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_matches_nn_lstm_grid(num_layers, bidirectional, batch_first, given_state):
    dtype = torch.float64
    ref, scratch = make_pair(
        7, 6, num_layers, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype
    )
    x, hx = inputs(ref, batch=4, seq_len=5, given_state=given_state)
    check_against_torch(ref, scratch, x, hx, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize(
    # sizes: input, hidden, layers, batch, sequence length
    ("sizes", "batch_first", "given_state"),
    [
        ((5, 10, 1, 1, 1), False, False),
        ((5, 10, 1, 1, 3), True, True),
        ((100, 20, 4, 3, 10), False, True),
        ((100, 20, 4, 3, 10), True, False),
    ],
)
def test_matches_nn_lstm_required_shapes(sizes, batch_first, given_state, bidirectional, dtype):
    *lstm_sizes, batch, seq_len = sizes
    ref, scratch = make_pair(
        *lstm_sizes, batch_first=batch_first, bidirectional=bidirectional, dtype=dtype
    )
    x, hx = inputs(ref, batch, seq_len, given_state)
    check_against_torch(ref, scratch, x, hx, dtype)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_no_bias_matches(bidirectional):
    ref, scratch = make_pair(4, 5, 2, bias=False, bidirectional=bidirectional)
    assert not any("bias" in name for name in scratch.state_dict())
    x, hx = inputs(ref, batch=3, seq_len=4, given_state=True)
    check_against_torch(ref, scratch, x, hx, torch.float64)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lengths_match_packed_sequence(num_layers, bidirectional, batch_first):
    ref, scratch = make_pair(3, 4, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    x, hx = inputs(ref, batch=4, seq_len=6, given_state=True)
    lengths = torch.tensor([6, 2, 4, 1])
    check_against_torch(ref, scratch, x, hx, torch.float64, lengths=lengths)


def test_state_dict_names_shapes_and_order():
    torch.manual_seed(0)
    ref = nn.LSTM(8, 16, 3, bidirectional=True)
    scratch = ScratchLSTM(8, 16, 3, bidirectional=True)
    ref_shapes = [(n, p.shape) for n, p in ref.named_parameters()]
    assert [(n, p.shape) for n, p in scratch.named_parameters()] == ref_shapes
    ref.load_state_dict(scratch.state_dict(), strict=True)  # and the other way round


@pytest.mark.parametrize(
    "make",
    [lambda: ScratchLSTM(8, 16, 3, bidirectional=True), lambda: ScratchLSTMCell(8, 16)],
    ids=["lstm", "cell"],
)
def test_default_init_is_uniform_over_one_over_sqrt_hidden(make):
    torch.manual_seed(0)
    bound = 16**-0.5
    for p in make().parameters():
        assert p.abs().max() <= bound
        assert p.abs().max() > 0.9 * bound  # the full range, not a narrower one


def test_unbatched_input_matches():
    ref, scratch = make_pair(5, 10, 2, bidirectional=True)
    x = torch.randn(3, 5, dtype=torch.float64)
    hx = (torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64))
    for state in (None, hx):
        out, (h_n, c_n) = scratch(x, state)
        ref_out, (ref_h, ref_c) = ref(x, state)
        close(out, ref_out)
        close(h_n, ref_h)
        close(c_n, ref_c)


def test_dropout_between_layers_only_in_training():
    ref, scratch = make_pair(5, 7, 3, dropout=0.5, bidirectional=True, dtype=torch.float32)
    x = torch.randn(4, 2, 5)
    ref.eval()
    scratch.eval()
    eval_out = scratch(x)[0]
    close(eval_out, ref(x)[0], torch.float32)
    close(scratch(x)[0], eval_out, torch.float32)  # eval is deterministic
    ref.train()
    scratch.train()
    torch.manual_seed(1)
    ref_train = ref(x)[0]
    torch.manual_seed(1)
    train_out = scratch(x)[0]
    assert (train_out - eval_out).abs().max() > 1e-3
    assert (train_out != 0).all()  # the last layer's output itself is never dropped
    # Same RNG draws in the same order as PyTorch's CPU kernel, so even dropout agrees.
    close(train_out, ref_train, torch.float32)


def test_bad_state_shape_raises():
    scratch = ScratchLSTM(3, 4, 2)
    bad = torch.zeros(1, 5, 4)
    with pytest.raises(ValueError, match="hx"):
        scratch(torch.zeros(6, 5, 3), (bad, bad))


# --- nn.LSTMCell form ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("given_state", [False, True])
def test_cell_matches_nn_lstm_cell(given_state, dtype):
    torch.manual_seed(0)
    ref = nn.LSTMCell(5, 10).to(dtype)
    cell = ScratchLSTMCell(5, 10).to(dtype)
    assert [(n, p.shape) for n, p in cell.named_parameters()] == [
        (n, p.shape) for n, p in ref.named_parameters()
    ]
    cell.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 5, dtype=dtype, requires_grad=True)
    hx = (torch.randn(3, 10, dtype=dtype), torch.randn(3, 10, dtype=dtype)) if given_state else None
    cot = (torch.randn(3, 10, dtype=dtype), torch.randn(3, 10, dtype=dtype))
    results = []
    for module in (ref, cell):
        module.zero_grad(set_to_none=True)
        h, c = module(x, hx)
        (x_grad,) = torch.autograd.grad(
            (h * cot[0]).sum() + (c * cot[1]).sum(), x, retain_graph=True
        )
        ((h * cot[0]).sum() + (c * cot[1]).sum()).backward()
        results.append([h, c, x_grad] + [p.grad for p in module.parameters()])
    for a, b in zip(*results, strict=True):
        close(a, b, dtype)
    # Unbatched (1-D) input works like nn.LSTMCell too.
    close(cell(x[0])[0], ref(x[0])[0], dtype)


def test_stacked_cells_match_two_nn_lstms():
    """Cells 100->30->20 looped over time equal nn.LSTM(100, 30) followed by nn.LSTM(30, 20)."""
    dtype = torch.float32
    torch.manual_seed(0)
    lstm1, lstm2 = nn.LSTM(100, 30), nn.LSTM(30, 20)
    cell1, cell2 = ScratchLSTMCell(100, 30), ScratchLSTMCell(30, 20)
    for lstm, cell in ((lstm1, cell1), (lstm2, cell2)):
        cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
    x = torch.randn(10, 3, 100, requires_grad=True)
    cot = torch.randn(10, 3, 20)

    ref_out, (h1, c1) = lstm1(x)
    ref_out, (h2, c2) = lstm2(ref_out)
    ref_grads = torch.autograd.grad(
        (ref_out * cot).sum(), [x, *lstm1.parameters(), *lstm2.parameters()]
    )

    state1 = state2 = None
    outs = []
    for x_t in x:
        state1 = cell1(x_t, state1)
        state2 = cell2(state1[0], state2)
        outs.append(state2[0])
    out = torch.stack(outs)
    grads = torch.autograd.grad((out * cot).sum(), [x, *cell1.parameters(), *cell2.parameters()])

    close(out, ref_out, dtype)
    for actual, expected in zip((*state1, *state2), (h1[0], c1[0], h2[0], c2[0]), strict=True):
        close(actual, expected, dtype)
    assert len(grads) == 1 + 2 * 4
    for actual, expected in zip(grads, ref_grads, strict=True):
        close(actual, expected, dtype)


# --- gate statistics -------------------------------------------------------------------------


def hand_gates(lstm: nn.LSTM, x, h0):
    """i, f, o per step from the weight slices, with h_{t-1} taken from nn.LSTM's own outputs."""
    hidden = lstm.hidden_size
    out, _ = lstm(x, (h0, torch.zeros_like(h0)))
    h_prev = torch.cat([h0, out[:-1]])  # (seq, batch, hidden)
    gates = {}
    for name, block in (("input", 0), ("forget", 1), ("output", 3)):
        rows = slice(block * hidden, (block + 1) * hidden)
        gates[name] = torch.sigmoid(
            x @ lstm.weight_ih_l0[rows].T
            + lstm.bias_ih_l0[rows]
            + h_prev @ lstm.weight_hh_l0[rows].T
            + lstm.bias_hh_l0[rows]
        )
    return gates


def test_gate_stats_match_hand_computation():
    ref, scratch = make_pair(3, 4)
    scratch.record_gates = True
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64)
    scratch(x, (h0, torch.zeros_like(h0)))
    with torch.no_grad():
        expected = hand_gates(ref, x, h0)
    assert set(scratch.gate_stats) == {
        f"layer0/{g}{s}" for g in ("input", "forget", "output") for s in ("", "_per_unit")
    }
    for name, values in expected.items():
        close(scratch.gate_stats[f"layer0/{name}"], values.mean())
        close(scratch.gate_stats[f"layer0/{name}_per_unit"], values.mean(dim=(0, 1)))
        assert not scratch.gate_stats[f"layer0/{name}"].requires_grad
    # The three gates really are different numbers, so a swapped gate order cannot pass.
    means = [expected[g].mean().item() for g in ("input", "forget", "output")]
    assert min(abs(a - b) for a, b in ((means[0], means[1]), (means[1], means[2]))) > 1e-3


def test_gate_stats_masked_mean_matches_hand_computation():
    ref, scratch = make_pair(3, 4)
    scratch.record_gates = True
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 3])
    scratch(x, lengths=lengths)
    with torch.no_grad():
        forget = hand_gates(ref, x, torch.zeros(1, 3, 4, dtype=torch.float64))["forget"]
    valid = torch.arange(5)[:, None] < lengths[None, :]  # (seq, batch)
    expected_units = forget[valid].mean(dim=0)  # forward direction: padding only comes after
    close(scratch.gate_stats["layer0/forget_per_unit"], expected_units)
    close(scratch.gate_stats["layer0/forget"], expected_units.mean())
    assert (forget.mean(dim=(0, 1)) - expected_units).abs().max() > 1e-4  # masking mattered


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gate_stats_ignore_padding(bidirectional):
    scratch = ScratchLSTM(3, 4, 2, batch_first=True, bidirectional=bidirectional, record_gates=True)
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 3])
    noisy = x.clone()
    noisy[1, 3:] = 10 * torch.randn(3, 3)

    def stats(inp, lens):
        scratch(inp, lengths=lens)
        return dict(scratch.gate_stats)

    clean_stats, noisy_stats = stats(x, lengths), stats(noisy, lengths)
    width = 4 * (2 if bidirectional else 1)
    assert len(clean_stats) == 2 * 3 * 2
    for key, value in clean_stats.items():
        assert value.shape == (() if not key.endswith("_per_unit") else (width,))
        close(noisy_stats[key], value, torch.float32)
    # Without lengths the same change is visible, so the check above is not vacuous.
    unmasked_clean, unmasked_noisy = stats(x, None), stats(noisy, None)
    assert (unmasked_clean["layer0/forget"] - unmasked_noisy["layer0/forget"]).abs() > 1e-4


def test_gate_stats_empty_when_recording_off():
    scratch = ScratchLSTM(3, 4, record_gates=True)
    scratch(torch.randn(2, 1, 3))
    assert scratch.gate_stats
    scratch.record_gates = False
    scratch(torch.randn(2, 1, 3))
    assert scratch.gate_stats == {}
