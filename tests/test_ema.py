"""The moving average of the weights: its warm-up, and that validation, checkpoints and the test
use it while resuming keeps the raw weights."""

from __future__ import annotations

import pytest
import torch

from lstm_sentiment.callbacks.ema import WarmupEMA
from lstm_sentiment.eval import evaluate
from lstm_sentiment.train import train

from helpers import compose_config


def test_the_average_warms_up_then_keeps_decay():
    ema = WarmupEMA(0.9)
    averaged, current = torch.tensor([1.0]), torch.tensor([0.0])
    # after 0 updates it keeps 1/10 of itself, after 8 updates 9/18, then never more than 0.9
    assert ema(averaged, current, torch.tensor(0)).item() == pytest.approx(0.1)
    assert ema(averaged, current, torch.tensor(8)).item() == pytest.approx(0.5)
    assert ema(averaged, current, torch.tensor(10_000)).item() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="decay"):
        WarmupEMA(1.0)


def test_checkpoints_and_the_test_use_the_average(train_cfg, tmp_path, tiny_data_dir):
    ema = ["++callbacks.ema._target_=lstm_sentiment.callbacks.ema.EMA", "++callbacks.ema.decay=0.9"]
    cfg = train_cfg(*ema, "trainer.max_epochs=2")
    metrics, trainer = train(cfg)
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys()
    weights = [k for k in averaged if k.startswith("net.") and averaged[k].is_floating_point()]
    assert any(not torch.equal(averaged[k], raw[k]) for k in weights)
    # eval of the checkpoint (its state_dict: the average) gives the run's test metrics exactly
    eval_cfg = compose_config("eval", tmp_path, tiny_data_dir, [f"ckpt_path={ckpt_path(trainer)}"])
    assert evaluate(eval_cfg)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def ckpt_path(trainer) -> str:
    return trainer.checkpoint_callback.best_model_path
