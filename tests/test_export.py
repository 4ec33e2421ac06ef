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

from helpers import run_with_file_size_limit, small_net

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


def test_disagreement_fails_the_export_and_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    cfg = export_cfg(
        tiny_checkpoint, "format=torchscript", f"output={tmp_path / 'm.pt'}", "check_reviews=32"
    )
    export_cli.export(cfg)  # an earlier, good export
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["m.pt", "m.vocab.json"]
    forward = ProbabilityModel.forward
    monkeypatch.setattr(ProbabilityModel, "forward", lambda self, i, n: forward(self, i, n) + 1e-3)
    with pytest.raises(ExportError, match="differ from PyTorch by 1.00e-03 .* nothing was written"):
        export_cli.export(cfg)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


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


# ------------------------------------------------- README "Failure behaviour": rows 2 and 12


def run_export_main(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["export", *argv])
    try:
        export_cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("fmt", "case"),
    [
        ("onnx", "output=checkpoint"),
        ("torchscript", "output=checkpoint"),
        ("onnx", "default name"),  # model.onnx (a checkpoint) -> model.onnx (its export)
        ("torchscript", "output=check_file"),
    ],
)
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    tiny_checkpoint, tiny_data_dir, tmp_path, monkeypatch, capsys, fmt, case
):
    name = f"model{export_cli.FORMATS[fmt]}" if case == "default name" else "model.ckpt"
    ckpt = tmp_path / name  # a checkpoint named like the export it would get by default
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    check = tmp_path / "check.ft.txt"
    check.write_bytes((tiny_data_dir / "test.ft.txt").read_bytes())
    argv = [f"ckpt_path={ckpt}", f"format={fmt}", f"check_file={check}"]
    if case != "default name":
        argv.append(f"output={ckpt if case == 'output=checkpoint' else check}")
    code, err = run_export_main(monkeypatch, capsys, *argv)
    what = "check_file" if case == "output=check_file" else "checkpoint"
    assert code == 1 and len(err.splitlines()) == 1
    assert f"is the {what} (" in err and "writing it would destroy it" in err
    assert ckpt.read_bytes() == tiny_checkpoint.read_bytes()
    assert check.read_bytes() == (tiny_data_dir / "test.ft.txt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "check.ft.txt"])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_full_disk_is_a_one_line_error_and_leaves_no_file(tiny_checkpoint, tmp_path, fmt):
    out = tmp_path / "out" / f"model{export_cli.FORMATS[fmt]}"
    out.parent.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "lstm_sentiment.export",
        f"ckpt_path={tiny_checkpoint}",
        f"format={fmt}",
        f"output={out}",
        "check_reviews=16",
    ]
    result = run_with_file_size_limit(cmd, 4096, cwd=tmp_path)  # the model is ~16-28 kB
    assert result.returncode == 1, result.stderr[-2000:]  # not killed by an abort (-6)
    assert result.stderr.splitlines()[-1] == (
        f"error: {out}: cannot write it (File too large); nothing was written there"
    )
    assert list(out.parent.iterdir()) == []  # no truncated model, no vocabulary without it
