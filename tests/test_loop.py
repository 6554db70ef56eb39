"""The one training loop (cism_lib/loop.py): schedule, batch order, resume, log."""
from __future__ import annotations

import json

import pytest
import torch

from cism_lib.loop import Epoch, epoch_loader, fit, poly_scheduler


class Points(torch.utils.data.Dataset):
    """y = 3x - 1 with a little noise, eight points."""

    def __init__(self, n: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, generator=g)
        self.y = 3 * self.x - 1 + 0.01 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "i": i}


def _train(tmp_path, epochs: int, state: dict | None = None, stop_after: int | None = None):
    """A linear model fitted with loop.fit; `state` carries a checkpoint between calls."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = poly_scheduler(opt, 4 * 3)
    history: list[dict] = []
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history = list(state["history"])
    data, seen = Points(), []

    def step(batch):
        seen.append(batch["i"].tolist())
        noise = 0.01 * torch.randn(())  # the epoch's seed fixes it
        return {"total": ((model(batch["x"]) - batch["y"]) ** 2).mean() + noise, "noise": noise}

    def checkpoint(history):
        saved.update(model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(), history=list(history))

    saved: dict = {}
    history = fit(model, opt, sched, step, lambda e: epoch_loader(data, 2, seed=5, epoch=e),
                  epochs=stop_after or epochs, seed=5, history=history,
                  record=lambda e, done: {"epoch": e, **done.losses, "steps": done.steps},
                  checkpoint=checkpoint, log=tmp_path / "log.jsonl", progress=False)
    return model, history, saved, seen


def test_a_resumed_fit_repeats_the_uninterrupted_one_exactly(tmp_path) -> None:
    model, history, _, seen = _train(tmp_path, 3)
    assert [r["epoch"] for r in history] == [0, 1, 2] and all(r["steps"] == 4 for r in history)
    assert history[-1]["total"] < history[0]["total"]  # it learns
    assert [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()] == history
    _, first, saved, seen_first = _train(tmp_path, 3, stop_after=1)   # killed after epoch 1
    resumed, rest, _, seen_rest = _train(tmp_path, 3, state=saved)    # the same command again
    assert rest == history and seen_first + seen_rest == seen
    assert torch.equal(resumed.weight, model.weight) and torch.equal(resumed.bias, model.bias)


def test_batch_order_depends_on_seed_and_epoch_only() -> None:
    data = Points()

    def order(seed: int, epoch: int) -> list[int]:
        return [i for b in epoch_loader(data, 2, seed, epoch) for i in b["i"].tolist()]

    assert order(0, 1) == order(0, 1) and sorted(order(0, 1)) == list(range(8))
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)
    assert len(epoch_loader(Points(5), 2, 0, 0)) == 2   # the incomplete last batch is dropped
    assert len(epoch_loader(Points(1), 2, 0, 0)) == 1   # unless the data are less than one batch


def test_poly_schedule_decays_over_all_steps_and_never_reaches_zero() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = poly_scheduler(opt, 10, power=0.9)
    lrs = []
    for _ in range(11):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:10] == pytest.approx([0.5 * (1 - s / 10) ** 0.9 for s in range(10)])
    assert 0 < lrs[10] == pytest.approx(lrs[9])


def test_an_epoch_record_sees_the_mean_losses_and_steps(tmp_path) -> None:
    got: list[Epoch] = []
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    values = iter([1.0, 2.0, 6.0])

    def step(batch):
        return {"total": model(batch["x"]).sum() * 0 + next(values)}

    fit(model, opt, poly_scheduler(opt, 3), step, lambda e: epoch_loader(Points(6), 2, 0, e), epochs=1, seed=0,
        history=[], record=lambda e, done: got.append(done) or {}, checkpoint=lambda h: None,
        log=tmp_path / "log.jsonl", progress=False)
    assert got[0].losses["total"] == pytest.approx(3.0) and got[0].steps == 3 and got[0].seconds >= got[0].data_s
