"""The shared trainer's logic on scripted scores: patience, confirming epochs, best checkpoint, exact resume."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from facegraph.nodes.training import checkpoints  # noqa: E402
from facegraph.nodes.training.errors import TrainingError  # noqa: E402
from facegraph.nodes.training.schedules import lr_factor  # noqa: E402
from facegraph.nodes.training.stopping import EarlyStopping  # noqa: E402
from facegraph.nodes.training.trainer import HISTORY, TrainConfig, Trainer  # noqa: E402


def test_patience_then_confirming_epochs_stop():
    s = EarlyStopping(patience=2, extra_epochs=2, mode="max")
    scores = [0.5, 0.6, 0.55, 0.58, 0.59, 0.57]  # best at epoch 1, then 4 stale epochs: 2 patience + 2 confirming
    stops = [s.update(e, v) for e, v in enumerate(scores)]
    assert stops == [False, False, False, False, False, True]
    assert (s.best, s.best_epoch) == (0.6, 1)


def test_an_improvement_while_confirming_cancels_the_stop():
    s = EarlyStopping(patience=2, extra_epochs=2, mode="min")
    stops = [s.update(e, v) for e, v in enumerate([1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0, 1.0])]
    assert stops == [False, False, False, False, False, False, False, True]
    assert s.best_epoch == 3


def test_no_extra_epochs_stops_after_patience():
    s = EarlyStopping(patience=3, extra_epochs=0)
    assert [s.update(e, v) for e, v in enumerate([1, 0, 0, 0])] == [False, False, False, True]


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    f = [lr_factor(i, schedule="cosine", total_steps=100, warmup_steps=10, min_factor=0.1) for i in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)
    steps = [lr_factor(i, schedule="step", total_steps=30, step_every=10, gamma=0.5) for i in (0, 9, 10, 25)]
    assert steps == [1.0, 1.0, 0.5, 0.25]


class ScriptedTask:
    """A tiny regression whose validation 'accuracy' follows a script, so stopping is known in advance."""

    kind = "scripted"

    def __init__(self, scores: list[float], interrupt_at: tuple[int, int] | None = None) -> None:
        self.scores, self.interrupt_at = scores, interrupt_at
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(64, generator=g)
        self.epoch = 0

    def model_config(self) -> dict[str, Any]:
        return {"inputs": 4}

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self.x) // batch_size

    def train_batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        self.epoch = epoch
        order = torch.randperm(len(self.x), generator=generator)
        for b in range(self.steps_per_epoch(batch_size)):
            if self.interrupt_at == (epoch, b):
                raise KeyboardInterrupt
            i = order[b * batch_size:(b + 1) * batch_size]
            yield self.x[i] + 0.01 * torch.randn(len(i), 4, generator=generator), self.y[i]

    def loss(self, model, batch, device):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x).squeeze(1), y), {}

    def validate(self, model, device) -> dict[str, float]:
        return {"val_accuracy": self.scores[self.epoch], "val_loss": 1.0 - self.scores[self.epoch]}


def _config(tmp_path, name: str, **kw: Any) -> TrainConfig:
    base = {"out": str(tmp_path / name), "epochs": 8, "batch_size": 16, "lr": 0.05, "patience": 2,
            "extra_epochs": 1, "progress": False, "threads": 1}
    return TrainConfig(**{**base, **kw})


def test_trainer_stops_early_and_keeps_the_best_epoch(tmp_path, capsys):
    scores = [0.2, 0.5, 0.7, 0.6, 0.65, 0.69, 0.9, 0.95]  # best 0.7 at epoch 3; 3 stale epochs stop at epoch 6
    result = Trainer(_config(tmp_path, "run")).fit(ScriptedTask(scores))
    assert (result.stopped, result.epochs_run, result.best_epoch) == ("early", 6, 3)
    best = checkpoints.load(result.best_checkpoint)
    assert best["epoch"] == 3 and best["best_metrics"]["val_accuracy"] == 0.7
    history = json.loads((tmp_path / "run" / HISTORY).read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "val_accuracy", "lr", "seconds"} <= set(history["epochs"][0])
    assert history["stopped"] == "early" and history["best_epoch"] == 3
    assert (tmp_path / "run" / checkpoints.FINAL).exists()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 6  # one report line per epoch
    assert torch.equal(result.model[0].weight, _weights(best)["0.weight"])  # fit() returns the best weights


def _weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return state["model"]


def test_resume_after_ctrl_c_equals_the_uninterrupted_run(tmp_path):
    scores = [0.1 * i for i in range(1, 9)]
    whole = Trainer(_config(tmp_path, "whole", save_every=2)).fit(ScriptedTask(scores))
    assert (tmp_path / "whole" / "checkpoint_epoch004.pt").exists()
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tmp_path, "cut")).fit(ScriptedTask(scores, interrupt_at=(5, 1)))
    kept = checkpoints.load(tmp_path / "cut")  # Ctrl-C keeps the last finished epoch and the history
    assert kept["epoch"] == 5
    assert json.loads((tmp_path / "cut" / HISTORY).read_text())["stopped"] == "interrupted"
    resumed = Trainer(_config(tmp_path, "cut"), resume=tmp_path / "cut").fit(ScriptedTask(scores))
    assert resumed.epochs_run == whole.epochs_run == 8
    a = checkpoints.load(whole.final_checkpoint)["model"]
    b = checkpoints.load(resumed.final_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]


def test_the_same_seed_repeats_and_another_seed_differs(tmp_path):
    scores = [0.5] * 8
    runs = [Trainer(_config(tmp_path, f"s{i}", seed=s, epochs=2)).fit(ScriptedTask(scores)).history
            for i, s in enumerate((3, 3, 4))]
    assert runs[0][-1]["train_loss"] == runs[1][-1]["train_loss"] != runs[2][-1]["train_loss"]


def test_resume_from_another_model_is_refused(tmp_path):
    Trainer(_config(tmp_path, "a", epochs=1)).fit(ScriptedTask([0.5]))
    other = ScriptedTask([0.5])
    other.model_config = lambda: {"inputs": 5}
    with pytest.raises(TrainingError, match=r"--resume .*checkpoint's model differs from this run's \(inputs=4 vs 5\)"):
        Trainer(_config(tmp_path, "b", epochs=1), resume=tmp_path / "a").fit(other)
    other.kind = "fer"
    with pytest.raises(TrainingError, match="holds a 'scripted' model, this run trains 'fer'"):
        Trainer(_config(tmp_path, "b", epochs=1), resume=tmp_path / "a").fit(other)


def test_a_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "checkpoint_last.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TrainingError, match="not a readable checkpoint") as err:
        checkpoints.load(bad, "--resume")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(TrainingError, match="no such file"):
        checkpoints.load(tmp_path / "nothing.pt")


def test_bad_flags_are_named():
    with pytest.raises(TrainingError, match="--optimizer"):
        TrainConfig(optimizer="lion").check()
    with pytest.raises(TrainingError, match="--patience"):
        TrainConfig(patience=0).check()
    with pytest.raises(TrainingError, match="--device cuda"):
        if torch.cuda.is_available():
            raise TrainingError("--device cuda (this machine has one; nothing to test)")
        Trainer(TrainConfig(device="cuda"))
