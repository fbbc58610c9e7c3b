"""The `[ui] metrics` parser over real progress-bar and log lines."""

from __future__ import annotations

import io

import pytest

from devloop.core.metrics import MetricHistory, MetricParser, lower_is_better

NAMES = ["loss", "val_loss", "acc", "accuracy", "val_acc", "val_accuracy", "train_loss", "lr"]

# (where the line comes from, the line, what is found)
TABLE = [
    ("plain print", "epoch 3 loss=0.123 acc=0.91\n", [("loss", 0.123), ("acc", 0.91)]),
    ("colon", "step 10: loss: 0.12, lr: 3e-4\n", [("loss", 0.12), ("lr", 3e-4)]),
    ("keras 2", "32/32 [==============================] - 1s 3ms/step - loss: 0.6918 - accuracy: 0.5250 "
                "- val_loss: 0.6841 - val_accuracy: 0.5900\n",
     [("loss", 0.6918), ("accuracy", 0.525), ("val_loss", 0.6841), ("val_accuracy", 0.59)]),
    ("keras 3", "\x1b[1m10/10\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m0s\x1b[0m "
                "2ms/step - accuracy: 0.8672 - loss: 0.3869 - val_accuracy: 0.8755 - val_loss: 0.3481\n",
     [("accuracy", 0.8672), ("loss", 0.3869), ("val_accuracy", 0.8755), ("val_loss", 0.3481)]),
    ("lightning tqdm", "Epoch 1: 100%|██████████| 63/63 [00:01<00:00, 45.12it/s, v_num=3, train_loss=0.412, "
                       "val_loss=0.398, val_acc=0.871]\n",
     [("train_loss", 0.412), ("val_loss", 0.398), ("val_acc", 0.871)]),
    ("lightning rich", "Epoch 0/9  ━━━━━━━━━━━━━━━━ 63/63 0:00:01 • 0:00:00 45.12it/s v_num: 3 train_loss: 0.412\n",
     [("train_loss", 0.412)]),
    ("hf trainer", "{'loss': 0.6931, 'learning_rate': 4.5e-05, 'epoch': 0.5}\n", [("loss", 0.6931)]),
    ("json", '{"loss": 1.5e-3, "val_acc": 0.5}\n', [("loss", 0.0015), ("val_acc", 0.5)]),
    ("nan", "loss=nan acc=-inf\n", [("loss", float("nan")), ("acc", float("-inf"))]),
    ("whole names only", "val_loss=1 my_loss=2 loss_scale=3 lossy=4 x.loss=5\n", [("val_loss", 1.0)]),
    ("not numbers", "loss=high acc=0.5x loss: n/a\n", []),
    ("a version is not a value", "torch: 2.1.0 loss=2\n", [("loss", 2.0)]),
]


@pytest.mark.parametrize("where,line,expected", TABLE, ids=[t[0] for t in TABLE])
def test_parser_table(where: str, line: str, expected: list) -> None:
    found = MetricParser(NAMES).feed(line)
    assert [n for n, _ in found] == [n for n, _ in expected]
    for (_, got), (_, want) in zip(found, expected):
        assert got == want or (got != got and want != want)


def test_a_real_tqdm_bar_with_a_postfix_gives_one_point_per_change() -> None:
    tqdm = pytest.importorskip("tqdm")
    buf = io.StringIO()
    bar = tqdm.tqdm(range(4), file=buf, mininterval=0, ascii=True)
    for i in bar:
        bar.set_postfix(loss=1 / (i + 1), val_acc=0.5 + i / 10)
    bar.close()
    parser = MetricParser(NAMES)
    text = buf.getvalue()
    found = []
    for k in range(0, len(text), 7):  # as the agent's chunks split it, anywhere
        found += parser.feed(text[k:k + 7])
    found += parser.flush()
    assert [v for n, v in found if n == "loss"] == [1, 0.5, 0.333, 0.25]
    assert [v for n, v in found if n == "val_acc"] == [0.5, 0.6, 0.7, 0.8]


def test_keras_redraws_then_the_epoch_line() -> None:
    parser = MetricParser(NAMES)
    chunks = ["Epoch 1/2\n",
              "\r1/3 [=========>....................] - ETA: 0s - loss: 0.9000",
              "\r2/3 [===================>..........] - ETA: 0s - loss: 0.8000",
              "\r3/3 [==============================] - 0s 5ms/step - loss: 0.7000 - val_loss: 0.6500\n"]
    found = [pair for chunk in chunks for pair in parser.feed(chunk)]
    assert found == [("loss", 0.9), ("loss", 0.8), ("loss", 0.7), ("val_loss", 0.65)]


def test_each_printed_line_counts_even_when_the_value_repeats() -> None:
    parser = MetricParser(["loss"])
    assert parser.feed("loss=1\nloss=1\nloss=1") == [("loss", 1.0), ("loss", 1.0)]
    assert parser.flush() == [("loss", 1.0)]


def test_no_names_no_work() -> None:
    assert MetricParser([]).feed("loss=1\n") == []


def test_history_summary_last_and_best_by_direction() -> None:
    history = MetricHistory(["loss", "val_acc", "unseen"])
    for v in (0.9, 0.4, 0.5):
        history.add("loss", v)
    for v in (0.5, 0.8, 0.7):
        history.add("val_acc", v)
    assert history.summary_lines() == ["metric loss: last 0.5, best 0.4 (min), 3 values",
                                       "metric val_acc: last 0.7, best 0.8 (max), 3 values"]
    assert lower_is_better("val_loss") and lower_is_better("WER") and not lower_is_better("f1")
