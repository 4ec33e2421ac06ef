"""Export to ONNX / TorchScript: files that run without Lightning and agree with PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lstm_sentiment import export as export_cli
from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.data.files import SAMPLE_DIR, find_review_file
from lstm_sentiment.data.reviews import read_reviews
from lstm_sentiment.export import ExportError, ProbabilityModel, load_exported, vocab_path
from lstm_sentiment.inference import load_predictor
from lstm_sentiment.models.sentiment_module import SentimentModule

from helpers import small_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE_TEST = find_review_file(SAMPLE_DIR, "test")


def export_cfg(ckpt, *overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("export", overrides=[f"ckpt_path={ckpt}", *overrides])


def real_reviews(n: int, skip: int = 0) -> list[str]:
    return [text for _, text in islice(read_reviews(SAMPLE_TEST), skip, skip + n)]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_agrees_with_pytorch_on_real_reviews(tiny_checkpoint, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    export_cli.export(export_cfg(tiny_checkpoint, f"format={fmt}", f"output={out}"))
    # a second batch, of another size and length than the export's own check, from the vocab file
    info = json.loads(vocab_path(out).read_text())
    encoder = TextEncoder.from_dict(info)  # as a server would read the file
    texts = real_reviews(37, skip=300)
    encoded = [encoder.encode(t) for t in texts]
    lengths = np.array([len(ids) for ids in encoded], np.int64)
    ids = np.zeros((len(texts), lengths.max()), np.int64)
    for row, seq in enumerate(encoded):
        ids[row, : len(seq)] = seq
    exported = load_exported(out)(ids, lengths)
    expected = load_predictor(tiny_checkpoint).probabilities(texts)
    assert exported.shape == (37,)
    np.testing.assert_allclose(exported, expected, atol=1e-5, rtol=0)


def test_exported_files_run_without_lightning(tiny_checkpoint, tmp_path):
    for fmt in ("onnx", "torchscript"):
        export_cli.export(export_cfg(tiny_checkpoint, f"format={fmt}", f"output={tmp_path / fmt}"))
    expected = load_predictor(tiny_checkpoint).probabilities(["great excellent", "awful waste"])
    script = f"""
import json, sys
sys.modules["lightning"] = sys.modules["lightning_fabric"] = None  # importing them now fails
sys.modules["lstm_sentiment"] = None
import numpy as np, onnxruntime, torch
torch.set_num_threads(1)
info = json.load(open({str(tmp_path / "onnx.vocab.json")!r}))
ids = np.array([[info["vocab"].index(w) for w in pair] for pair in
                [["great", "excellent"], ["awful", "waste"]]], np.int64)
lengths = np.array([2, 2], np.int64)
session = onnxruntime.InferenceSession({str(tmp_path / "onnx")!r})
onnx = session.run(None, {{"ids": ids, "lengths": lengths}})[0]
ts_model = torch.jit.load({str(tmp_path / "torchscript")!r})
ts = ts_model(torch.from_numpy(ids), torch.from_numpy(lengths))
print(json.dumps([onnx.tolist(), ts.tolist()]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    onnx, ts = json.loads(result.stdout)
    np.testing.assert_allclose(onnx, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ts, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("rnn_type", "bidirectional", "fmt"),
    [
        ("gru", False, "onnx"),
        ("rnn", False, "onnx"),
        ("lstm", True, "onnx"),
        ("gru", True, "torchscript"),
    ],
)
def test_other_networks_export(tiny_checkpoint, tmp_path, rnn_type, bidirectional, fmt):
    """Two layers, other cells, both directions: the export's own check (1e-5 against the packed
    PyTorch model, 64 real reviews) must pass."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    hp = ckpt["hyper_parameters"]
    hp["net"] = {**hp["net"], "rnn_type": rnn_type, "num_layers": 2, "bidirectional": bidirectional}
    ckpt["hyper_parameters"], ckpt["state_dict"] = hp, SentimentModule(**hp).state_dict()
    torch.save(ckpt, tmp_path / "net.ckpt")
    out = export_cli.export(export_cfg(tmp_path / "net.ckpt", f"format={fmt}", "check_reviews=64"))
    assert out == tmp_path / f"net{export_cli.FORMATS[fmt]}" and vocab_path(out).is_file()


def test_disagreement_fails_the_export(tiny_checkpoint, tmp_path, monkeypatch):
    forward = ProbabilityModel.forward
    monkeypatch.setattr(ProbabilityModel, "forward", lambda self, i, n: forward(self, i, n) + 1e-3)
    cfg = export_cfg(
        tiny_checkpoint, "format=torchscript", f"output={tmp_path / 'm.pt'}", "check_reviews=32"
    )
    with pytest.raises(ExportError, match="differ from PyTorch by 1.00e-03"):
        export_cli.export(cfg)
    assert not (tmp_path / "m.pt").exists()


def test_scratch_cell_export_is_refused():
    with pytest.raises(ExportError, match="cell=scratch does not export"):
        ProbabilityModel(small_net(10, cell="scratch"))


def test_cli_error_is_one_line(tmp_path, monkeypatch, capsys):
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["export", f"ckpt_path={tmp_path / 'none.ckpt'}"])
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("error: ") and "no such checkpoint" in err and len(err.splitlines()) == 1
