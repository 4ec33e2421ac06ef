"""Prediction from a checkpoint: every input route, the per-token view, and each error case."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lstm_sentiment import predict as predict_cli
from lstm_sentiment.config import CONFIG_DIR, yaml_settings
from lstm_sentiment.data.cache import load_cache
from lstm_sentiment.data.vocab import UNK_ID
from lstm_sentiment.inference import load_predictor
from lstm_sentiment.models.sentiment_module import SentimentModule

from helpers import run_with_file_size_limit, small_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRICKY = 'Great start, but it\'s "broken" after a week: ${not.a.key} [1,2] 50% =('


def predict_cfg(ckpt: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("predict", overrides=[f"ckpt_path={ckpt}", *overrides])


def run_predict(ckpt: Path, *overrides: str, texts=(), stdin: bytes = b"") -> list[dict]:
    out = io.StringIO()
    predict_cli.predict(predict_cfg(ckpt, *overrides), texts, io.BytesIO(stdin), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def run_main(monkeypatch, capsys, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """The CLI's ``main`` in-process (Hydra and all), as a subprocess would run it."""
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["predict", *argv])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        predict_cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_arguments_are_taken_verbatim(tiny_checkpoint, monkeypatch, capsys):
    code, out, _ = run_main(
        monkeypatch,
        capsys,
        f"ckpt_path={tiny_checkpoint}",
        f"text={TRICKY}",
        "text=awful waste, broken",
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == [TRICKY, "awful waste, broken"]
    # the Lightning model itself, as training built it, gives the same probabilities
    model = SentimentModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu").eval()
    batch = load_predictor(tiny_checkpoint).batch([r["text"] for r in records])
    expected = torch.sigmoid(model(batch["ids"], batch["lengths"])).tolist()
    assert [r["probability"] for r in records] == pytest.approx(expected, abs=1e-6)
    for r in records:
        assert r["label"] == ("positive" if r["probability"] >= 0.5 else "negative")


def test_encoding_matches_the_training_cache(tiny_checkpoint, tiny_data_dir):
    """Text -> ids at prediction time is exactly what the training cache stored."""
    predictor = load_predictor(tiny_checkpoint)
    cache_root = tiny_checkpoint.parents[2] / "cache"
    (folder,) = [p for p in cache_root.iterdir() if not p.name.startswith(".")]
    _, splits = load_cache(folder)
    records = run_predict(tiny_checkpoint, f"input={tiny_data_dir / 'test.ft.txt'}")
    assert len(records) == len(splits["test"]) == 200
    for i in (0, 1, 57, 199):
        ids = predictor.batch([records[i]["text"]])["ids"][0]
        assert ids.tolist() == splits["test"].review(i).tolist()
    labels = splits["test"].labels
    assert [r["target"] for r in records] == ["positive" if y else "negative" for y in labels]


@pytest.mark.parametrize("fmt", ["lines", "fasttext", "csv"])
def test_input_files(tiny_checkpoint, tmp_path, fmt):
    reviews = ["good: great excellent", "bad: terrible, awful waste", "so-so: it was a book"]
    if fmt == "lines":
        path = tmp_path / "reviews.txt"
        path.write_text("\n".join(reviews[:2]) + "\n\n" + reviews[2] + "\n")  # a blank line
    elif fmt == "fasttext":
        path = tmp_path / "reviews.ft.txt"
        path.write_text("".join(f"__label__{2 - i % 2} {r}\n" for i, r in enumerate(reviews)))
    else:
        path = tmp_path / "reviews.csv"
        rows = [r.split(": ") for r in reviews]
        path.write_text("".join(f'"{2 - i % 2}","{t}","{b}"\n' for i, (t, b) in enumerate(rows)))
    records = run_predict(tiny_checkpoint, f"input={path}", "batch_size=2")
    if fmt == "lines":  # the blank line keeps its place, with no prediction
        assert records.pop(2) == {"text": "", "probability": None, "label": None, "known_tokens": 0}
    assert [r["text"] for r in records] == reviews
    direct = load_predictor(tiny_checkpoint).probabilities(reviews)
    assert [r["probability"] for r in records] == pytest.approx(direct, abs=1e-6)
    has_target = fmt != "lines"
    assert all(("target" in r) == has_target for r in records)


def test_output_file_and_batching_keep_order(tiny_checkpoint, tmp_path):
    lines = [f"review {i}:" + " great" * (i % 7) + " terrible" * (i % 3) for i in range(23)]
    out = tmp_path / "out.jsonl"
    cfg = predict_cfg(tiny_checkpoint, f"output={out}", "batch_size=4")
    n = predict_cli.predict(cfg, stdin=io.BytesIO("\n".join(lines).encode()))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert n == 23 and [r["text"] for r in records] == lines
    one_batch = load_predictor(tiny_checkpoint).probabilities(lines)
    assert [r["probability"] for r in records] == pytest.approx(one_batch, abs=1e-6)


def test_stdin_cli_writes_clean_jsonl_and_nothing_else(tiny_checkpoint, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lstm_sentiment.predict", f"ckpt_path={tiny_checkpoint}"],
        input="great excellent love\nÜber-terrible, awful\n".encode(),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["text"] for r in records] == ["great excellent love", "Über-terrible, awful"]
    assert "2 reviews" in result.stderr.decode()  # the log line went to stderr
    assert list(tmp_path.iterdir()) == []  # no Hydra run folder, .hydra/ or log file


def test_per_token_ends_at_the_review_probability(tiny_checkpoint, tmp_path, capsys):
    predictor = load_predictor(tiny_checkpoint)
    short = "great start, excellent... but broken after a week: terrible waste"
    long = " ".join(["great"] * 250 + ["terrible"] * 250)  # longer than max_len: truncated
    for text in (short, long):
        view = predictor.per_token(text)
        assert view.reading == "prefix"  # a one-directional network read at its last state
        tokens, probs = view.tokens, view.values
        assert (
            len(tokens)
            == len(probs)
            == min(len(predictor.encoder.pipeline(text)), predictor.encoder.max_len)
        )
        assert probs[-1] == pytest.approx(predictor.probabilities([text])[0], abs=1e-6)

    plot = tmp_path / "turns.png"
    predict_cli.predict(predict_cfg(tiny_checkpoint, "per_token=true", f"plot={plot}"), [short])
    table = capsys.readouterr().out.splitlines()
    view = predictor.per_token(short)
    tokens, probs = view.tokens, view.values
    rows = [row for row in table[2:] if row]  # the review, then the header
    assert len(rows) == len(tokens)
    assert [row.split()[1] for row in rows] == tokens
    assert [float(row.split()[2]) for row in rows] == pytest.approx(probs, abs=1e-3)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def with_net(ckpt_path: Path, out: Path, **net) -> Path:
    """The checkpoint with another network shape (fresh weights of that shape)."""
    ckpt = torch.load(ckpt_path, weights_only=True)
    hp = ckpt["hyper_parameters"]
    hp["net"] = {**hp["net"], **net}
    torch.manual_seed(0)
    ckpt["state_dict"] = SentimentModule(**hp).state_dict()
    torch.save(ckpt, out)
    return out


def test_per_token_shares_of_the_default_network_add_up(tiny_checkpoint, tmp_path, capsys):
    default = yaml_settings("model/lstm")["net"]
    shape = {k: default[k] for k in ("bidirectional", "pooling", "num_layers", "rnn_type")}
    ckpt = with_net(tiny_checkpoint, tmp_path / "default.ckpt", **shape)
    predictor = load_predictor(ckpt)
    text = "great start, excellent... but broken after a week: terrible waste"
    view = predictor.per_token(text)
    assert view.reading == ("occlusion" if "last" in shape["pooling"] else "share")
    assert len(view.values) == len(view.tokens) == len(predictor.encoder.tokens(text))
    if view.reading == "share":  # the shares and the bias make the logit
        logit = view.bias + sum(view.values)
        assert torch.sigmoid(torch.tensor(logit)).item() == pytest.approx(view.probability)

    plot = tmp_path / "shares.png"
    predict_cli.predict(predict_cfg(ckpt, "per_token=true", f"plot={plot}"), [text])
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[2:] == ["share", "of", "the", "logit"]
    rows = table[2 : 2 + len(view.tokens)]
    assert [row.split()[1] for row in rows] == view.tokens
    assert [float(row.split()[2]) for row in rows] == pytest.approx(view.values, abs=1e-3)
    assert f"p(positive) {view.probability:.3f}" in table[2 + len(view.tokens)]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bidirectional_last_state_network_is_explained_by_occlusion(tiny_checkpoint, tmp_path):
    ckpt = with_net(tiny_checkpoint, tmp_path / "bi.ckpt", bidirectional=True, pooling="last")
    predictor = load_predictor(ckpt)
    view = predictor.per_token("great product, terrible box")
    assert view.reading == "occlusion"
    unknown = predictor.encoder.tokens("great product, terrible box")
    unknown[0] = "zzzzunknownzzzz"  # the first token, unknown to the vocabulary
    logit = torch.logit(torch.tensor(view.probability))
    without = torch.logit(torch.tensor(predictor.probabilities([" ".join(unknown)])[0]))
    assert view.values[0] == pytest.approx(float(logit - without), abs=1e-4)


def _error_cases(ckpt: Path, tmp: Path) -> dict[str, tuple[list[str], bytes, str]]:
    """name -> (arguments, stdin, what the error line must say)."""
    corrupt, truncated, plain = tmp / "corrupt.ckpt", tmp / "truncated.ckpt", tmp / "plain.pt"
    corrupt.write_bytes(b"this is not a checkpoint\n" * 10)
    truncated.write_bytes(ckpt.read_bytes()[:3000])
    torch.save(small_module(10).state_dict(), plain)
    objects = tmp / "objects.ckpt"  # weights_only loading refuses arbitrary Python objects
    torch.save({"state_dict": {}, "hyper_parameters": Path("x")}, objects)
    other = tmp / "other.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    saved["hyper_parameters"] = {"num_classes": 10, "backbone": "resnet18"}
    torch.save(saved, other)
    latin1 = tmp / "latin1.txt"
    latin1.write_bytes("fine review\nr\xe9sum\xe9 in latin-1\n".encode("latin-1"))
    ft = tmp / "bad.ft.txt"
    ft.write_bytes(b"__label__2 fine: review\n__label__1 bad: r\xe9sum\xe9\n")
    return {
        "missing": ([f"ckpt_path={tmp / 'nope.ckpt'}", "text=ok"], b"", "no such checkpoint"),
        "corrupt": ([f"ckpt_path={corrupt}", "text=ok"], b"", "not a readable PyTorch checkpoint"),
        "truncated": ([f"ckpt_path={truncated}", "text=ok"], b"", "corrupt, truncated"),
        "pickled objects": ([f"ckpt_path={objects}", "text=ok"], b"", "run pathlib.PosixPath;"),
        "plain state dict": ([f"ckpt_path={plain}", "text=ok"], b"", "not a Lightning checkpoint"),
        "other model": ([f"ckpt_path={other}", "text=ok"], b"", "another model type"),
        "empty stdin": ([f"ckpt_path={ckpt}"], b"\n  \n", "no reviews"),
        "empty text": ([f"ckpt_path={ckpt}", "text= "], b"", "text argument 1 is empty"),
        "non-UTF-8 line": ([f"ckpt_path={ckpt}", f"input={latin1}"], b"", "line 2 is not UTF-8"),
        "non-UTF-8 stdin": ([f"ckpt_path={ckpt}"], b"ok\n\xff\xfe\n", "stdin: line 2"),
        "non-UTF-8 fastText": ([f"ckpt_path={ckpt}", f"input={ft}"], b"", "line 2: invalid UTF-8"),
        "missing input": ([f"ckpt_path={ckpt}", f"input={tmp / 'no.txt'}"], b"", "no such input"),
        "text and input": ([f"ckpt_path={ckpt}", "text=a", f"input={ft}"], b"", "not both"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "corrupt",
        "truncated",
        "pickled objects",
        "plain state dict",
        "other model",
        "empty stdin",
        "empty text",
        "non-UTF-8 line",
        "non-UTF-8 stdin",
        "non-UTF-8 fastText",
        "missing input",
        "text and input",
    ],
)
def test_errors_are_one_line(tiny_checkpoint, tmp_path, monkeypatch, capsys, case):
    argv, stdin, message = _error_cases(tiny_checkpoint, tmp_path)[case]
    code, out, err = run_main(monkeypatch, capsys, *argv, stdin=stdin)
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and message in err


def test_error_cli_has_no_traceback(tmp_path):
    (tmp_path / "bad.ckpt").write_bytes(b"\x00" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "lstm_sentiment.predict", "ckpt_path=bad.ckpt", "text=fine"],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        text=True,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: bad.ckpt: not a readable PyTorch checkpoint")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


# ------------------------------------------- README "Failure behaviour": rows 1, 10, 12, 16


def _aliases(path: Path, tmp: Path) -> dict[str, Path]:
    """Other names of the same file: relative, through a symlink, a hard link."""
    (tmp / "link").symlink_to(path)
    os.link(path, tmp / "hard")
    return {
        "same path": path,
        "relative path": Path(os.path.relpath(path)),
        "symlink": tmp / "link",
        "hard link": tmp / "hard",
    }


@pytest.mark.parametrize("alias", ["same path", "relative path", "symlink", "hard link"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(
    tiny_checkpoint, tmp_path, monkeypatch, capsys, alias
):
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("".join(f"review {i}: great excellent\n" for i in range(100)))
    before = reviews.read_bytes()
    output = _aliases(reviews, tmp_path)[alias]
    code, out, err = run_main(
        monkeypatch, capsys, f"ckpt_path={tiny_checkpoint}", f"input={reviews}", f"output={output}"
    )
    assert code == 1 and out == ""
    assert err == (
        f"error: output {output} is the input ({reviews}): writing it would destroy it; "
        "choose another output path\n"
    )
    assert reviews.read_bytes() == before


def test_an_output_that_is_the_checkpoint_is_refused(
    tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    for key in ("output", "plot"):
        argv = [f"ckpt_path={ckpt}", "text=great", f"{key}={ckpt}"]
        code, _, err = run_main(monkeypatch, capsys, *argv, *(["per_token=true"] * (key == "plot")))
        assert code == 1 and f"is the checkpoint ({ckpt})" in err and len(err.splitlines()) == 1
    assert ckpt.read_bytes() == tiny_checkpoint.read_bytes()


@pytest.mark.parametrize(
    "option", ["batch_size=0", "batch_size=-3", "batch_size=many", "threads=0", "threshold=1.5"]
)
def test_options_out_of_range_are_one_line_errors(tiny_checkpoint, monkeypatch, capsys, option):
    code, out, err = run_main(
        monkeypatch, capsys, f"ckpt_path={tiny_checkpoint}", "text=great", option
    )
    key = option.partition("=")[0]
    assert code == 1 and out == ""
    assert err.startswith(f"error: {key}=") and "is invalid: it must be" in err
    assert len(err.splitlines()) == 1


def test_blank_lines_keep_output_lines_aligned_with_input_lines(
    tiny_checkpoint, monkeypatch, capsys, caplog
):
    lines = ["great excellent", "", "terrible awful", "   ", "", "love it"]
    stdin = ("\n".join(lines) + "\n").encode()
    code, out, err = run_main(monkeypatch, capsys, f"ckpt_path={tiny_checkpoint}", stdin=stdin)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(lines)
    for line, record in zip(lines, records, strict=True):
        assert record["text"] == line.strip()
        assert (record["probability"] is None) == (not line.strip())
        assert (record["label"] is None) == (not line.strip())
    assert "3 blank input line(s) (lines 2, 4, 5) got null predictions" in caplog.text


def test_text_with_no_known_word_is_flagged(tiny_checkpoint, monkeypatch, capsys, caplog):
    unknown = "日本語のレビュー ✨✨ qwzxv"
    argv = [f"ckpt_path={tiny_checkpoint}", "text=great excellent, terrible", f"text={unknown}"]
    code, out, _ = run_main(monkeypatch, capsys, *argv)
    assert code == 0
    known, none = [json.loads(line) for line in out.splitlines()]
    ids = load_predictor(tiny_checkpoint).encoder.encode(known["text"])
    assert known["known_tokens"] == sum(i != UNK_ID for i in ids) >= 3
    assert none["known_tokens"] == 0
    assert none["text"] == unknown and 0 <= none["probability"] <= 1
    assert '1 review(s) hold no word the vocabulary knows (output lines 2: "known_tokens": 0)' in (
        caplog.text
    )


def _predict_cmd(ckpt: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lstm_sentiment.predict", f"ckpt_path={ckpt}", *args]


def test_text_argument_with_bytes_that_are_not_utf8_is_refused(tiny_checkpoint, tmp_path):
    argv = [os.fsencode(a) for a in _predict_cmd(tiny_checkpoint)] + [b"text=caf\xe9 cr\xe8me"]
    result = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr == b"error: text argument 1 is not UTF-8 (a bad byte at character 4)\n"


def test_a_closed_stdin_is_not_needed_with_text_and_named_without(tiny_checkpoint, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            _predict_cmd(tiny_checkpoint, *args),
            preexec_fn=lambda: os.close(0),  # the command runs with standard input closed
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )

    with_text = run("text=great excellent")
    assert with_text.returncode == 0, with_text.stderr
    assert json.loads(with_text.stdout)["text"] == "great excellent"
    without = run()
    assert without.returncode == 1 and without.stdout == ""
    assert without.stderr == (
        "error: no reviews given and standard input is closed: pass text=REVIEW or input=FILE\n"
    )


@pytest.mark.parametrize("existing", [True, False])
def test_an_error_mid_file_leaves_the_output_as_it_was(
    tiny_checkpoint, tmp_path, monkeypatch, capsys, existing
):
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(b"great excellent\n" * 100 + b"r\xe9sum\xe9 in latin-1\n")
    output = tmp_path / "out" / "predictions.jsonl"
    output.parent.mkdir()
    if existing:
        output.write_text('{"an earlier run": true}\n')
    argv = [f"ckpt_path={tiny_checkpoint}", f"input={reviews}", f"output={output}", "batch_size=8"]
    code, _, err = run_main(monkeypatch, capsys, *argv)
    assert code == 1 and "line 101 is not UTF-8" in err
    assert [p.name for p in output.parent.iterdir()] == (["predictions.jsonl"] if existing else [])
    if existing:
        assert output.read_text() == '{"an earlier run": true}\n'


def test_output_goes_through_a_temporary_file_with_the_usual_permissions(
    tiny_checkpoint, tmp_path, monkeypatch
):
    renamed = []
    monkeypatch.setattr(
        os, "replace", lambda a, b: renamed.append((Path(a), Path(b))) or os.rename(a, b)
    )
    output = tmp_path / "p.jsonl"
    predict_cli.predict(predict_cfg(tiny_checkpoint, f"output={output}"), ["great"])
    ((tmp, final),) = renamed
    assert final == output and tmp.parent == tmp_path and not tmp.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_full_disk_is_a_one_line_error_and_leaves_no_file(tiny_checkpoint, tmp_path):
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great excellent, a fine review of a fine product\n" * 500)
    output = tmp_path / "out" / "p.jsonl"
    output.parent.mkdir()
    result = run_with_file_size_limit(
        _predict_cmd(tiny_checkpoint, f"input={reviews}", f"output={output}"), 8192, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: {output}: cannot write it (File too large); nothing was written there"
    )
    assert list(output.parent.iterdir()) == []
