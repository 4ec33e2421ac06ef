"""The network and the LightningModule; the recipe's model faults stay fixed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import batch_of, small_module, small_net


@pytest.mark.parametrize("rnn_type", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("pack", [True, False])
def test_any_batch_size_and_fresh_state(rnn_type, pack):
    torch.manual_seed(0)
    net = small_net(num_layers=2, rnn_type=rnn_type, pack=pack).eval()
    ids, lengths = batch_of([5, 3, 7, 1, 4, 6, 2])
    full = net(ids, lengths)
    assert full.shape == (7,)
    # a last partial batch of 3 works (the recipe's fixed-size state broke on it) ...
    assert torch.allclose(net(ids[:3], lengths[:3]), full[:3], atol=1e-6)
    # ... and no state leaks from one batch into the next (the recipe carried it over)
    other_ids, other_lengths = batch_of([9, 9, 9], seed=1)
    net(other_ids, other_lengths)
    assert torch.allclose(net(ids, lengths), full, atol=1e-6)


@pytest.mark.parametrize("pack", [True, False])
def test_reads_the_real_last_token_not_padding(pack):
    torch.manual_seed(0)
    net = small_net(pack=pack).eval()
    ids, lengths = batch_of([4, 6])
    padded, _ = batch_of([4, 6], width=30)
    assert torch.allclose(net(ids, lengths), net(padded, lengths), atol=1e-6)
    # the logit is the state after token 4, not after the pads: cutting the review changes it
    assert not torch.allclose(net(ids, torch.tensor([3, 6]))[0], net(ids, lengths)[0])


def test_bidirectional_ignores_padding():
    torch.manual_seed(0)
    net = small_net(bidirectional=True, pack=False).eval()
    ids, lengths = batch_of([4, 6])
    padded, _ = batch_of([4, 6], width=20)
    assert torch.allclose(net(ids, lengths), net(padded, lengths), atol=1e-6)


def test_per_token_logits_end_at_the_review_logit():
    torch.manual_seed(0)
    net = small_net().eval()
    ids, lengths = batch_of([6])
    per_token = net.per_token_logits(ids)
    assert per_token.shape == (1, 6)
    for t in range(1, 7):
        assert torch.allclose(per_token[0, t - 1], net(ids[:, :t], torch.tensor([t]))[0], atol=1e-6)


def test_padding_row_of_the_embedding_stays_zero():
    net = small_net()
    assert net.embedding.padding_idx == 0
    assert torch.count_nonzero(net.embedding.weight[0]) == 0


def test_loss_is_bce_with_logits_exact_where_sigmoid_bce_saturates():
    module = small_module()
    assert isinstance(module.loss_fn, nn.BCEWithLogitsLoss)
    logits, labels = torch.tensor([200.0]), torch.tensor([0.0])
    # sigmoid(200) rounds to 1, and BCELoss clamps log(0) to -100: the recipe's loss is off by 100
    assert nn.BCELoss()(torch.sigmoid(logits), labels).item() == pytest.approx(100.0)
    assert module.loss_fn(logits, labels).item() == pytest.approx(200.0)


def test_hyperparameters_are_plain_values():
    module = small_module(scheduler="cosine")
    for key, value in module.hparams.items():
        assert value is None or isinstance(value, (int, float, str, bool, dict)), key


def test_unknown_options_fail_clearly():
    with pytest.raises(ValueError, match="rnn_type"):
        small_net(rnn_type="transformer")
    with pytest.raises(ValueError, match="scheduler"):
        small_module(scheduler="warmup")


@pytest.mark.parametrize("rnn_type", ["lstm", "gru", "rnn"])
def test_unpacked_bidirectional_equals_packed(rnn_type):
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=True, dropout=0.0, rnn_type=rnn_type)
    packed = small_net(pack=True, **kw).eval()
    unpacked = small_net(pack=False, **kw).eval()
    unpacked.load_state_dict(packed.state_dict())
    ids, lengths = batch_of([12, 3, 7, 1, 9])
    assert torch.allclose(unpacked(ids, lengths), packed(ids, lengths), atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_and_packing_leave_the_gradients_unchanged(bidirectional):
    """Training is exact too: wider padding (fixed 200 vs per batch) or packing change neither the
    loss nor any gradient, so bucketing changes only which reviews share a batch."""
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=bidirectional, dropout=0.0)
    nets = [small_net(pack=pack, **kw) for pack in (True, False, False)]
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict())
    lengths = [12, 3, 7, 1, 9]
    inputs = [batch_of(lengths), batch_of(lengths), batch_of(lengths, width=40)]
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    grads = []
    for net, (ids, lens) in zip(nets, inputs, strict=True):
        nn.functional.binary_cross_entropy_with_logits(net(ids, lens), labels).backward()
        grads.append({name: p.grad for name, p in net.named_parameters()})
    for other in grads[1:]:
        for name, grad in grads[0].items():
            assert torch.allclose(other[name], grad, atol=1e-7), name


def test_train_metrics_are_each_epochs_own():
    """train/acc, f1 and auroc are computed once per epoch from that epoch's batches and reset."""
    import lightning.pytorch as pl

    torch.manual_seed(0)
    batches = []
    for seed in range(6):
        ids, lengths = batch_of([5, 3, 7, 1, 4, 6, 2, 8], seed=seed)
        labels = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(seed)).float()
        batches.append({"ids": ids, "lengths": lengths, "labels": labels})
    module = small_module(net={"dropout": 0.0}, lr=0.0)
    with torch.no_grad():
        logits = torch.cat([module(b["ids"], b["lengths"]) for b in batches])
    labels = torch.cat([b["labels"] for b in batches])
    expected = ((logits > 0).float() == labels).float().mean()

    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    logged = trainer.callback_metrics
    assert {"train/acc", "train/f1", "train/auroc", "train/loss_epoch"} <= set(logged)
    assert torch.isclose(logged["train/acc"], expected)  # lr=0: the model never changed
    assert all(metric.update_count == 0 for metric in module.train_metrics.values())


POOLINGS = ["last", "max", "mean", "attention", "max+mean", "last+max"]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooled_logit_does_not_depend_on_padding(pooling, bidirectional):
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=bidirectional, pooling=pooling, pack=False)
    net = small_net(**kw).eval()
    ids, lengths = batch_of([4, 9, 1])
    padded, _ = batch_of([4, 9, 1], width=25)
    assert torch.allclose(net(ids, lengths), net(padded, lengths), atol=1e-6)
    # and each review is read on its own: alone, it gets the logit it got in the batch
    for row in range(3):
        alone = net(ids[row : row + 1, : lengths[row]], lengths[row : row + 1])
        assert torch.allclose(alone, net(ids, lengths)[row], atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "mean", "attention", "max+mean+attention"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_token_contributions_add_up_to_the_logit(pooling, bidirectional):
    torch.manual_seed(0)
    net = small_net(bidirectional=bidirectional, pooling=pooling).eval()
    ids, lengths = batch_of([5, 8, 2])
    shares = net.token_contributions(ids, lengths)
    assert shares.shape == ids.shape
    assert torch.all(shares[0, 5:] == 0) and torch.all(shares[2, 2:] == 0)  # pads own nothing
    assert torch.allclose(shares.sum(1) + net.fc.bias, net(ids, lengths), atol=1e-5)


def test_max_pooling_credits_each_unit_to_the_token_holding_its_maximum():
    torch.manual_seed(0)
    net = small_net(pooling="max").eval()
    ids, lengths = batch_of([6])
    states = net.encode(ids, lengths)[0].detach()  # [T, D]
    owner = states.argmax(0)
    expected = [float((net.fc.weight[0] * states[t])[owner == t].sum()) for t in range(6)]
    assert torch.allclose(net.token_contributions(ids, lengths)[0], torch.tensor(expected))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_state_contributions_are_what_unknowing_the_token_costs(bidirectional):
    torch.manual_seed(0)
    net = small_net(bidirectional=bidirectional, pooling="last").eval()
    ids, lengths = batch_of([5, 3])
    shares = net.token_contributions(ids, lengths)
    whole = net(ids, lengths)
    for row, t in [(0, 0), (0, 4), (1, 1)]:
        occluded = ids.clone()
        occluded[row, t] = 1  # _UNK
        expected = whole[row] - net(occluded, lengths)[row]
        assert torch.allclose(shares[row, t], expected, atol=1e-6)


def test_word_dropout_turns_tokens_unknown_in_training_only():
    torch.manual_seed(0)
    net = small_net(pooling="max", word_dropout=1.0, dropout=0.0)
    ids, lengths = batch_of([5, 3])
    unknown = torch.where(ids > 0, torch.ones_like(ids), ids)  # every real token -> _UNK
    net.train()
    assert torch.allclose(net(ids, lengths), net.eval()(unknown, lengths), atol=1e-6)
    plain = small_net(pooling="max", dropout=0.0).eval()
    plain.load_state_dict(net.state_dict())
    assert torch.allclose(net.eval()(ids, lengths), plain(ids, lengths))


def test_unknown_pooling_fails_clearly():
    for bad in ["sum", "max+max", ""]:
        with pytest.raises(ValueError, match="pooling must be one of"):
            small_net(pooling=bad)
