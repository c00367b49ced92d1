"""Tests for universality.tasks: a contract over every registered task, plus properties."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from universality.tasks import (
    TASKS,
    ContextIntegration,
    FlipFlop,
    SineWave,
    Task,
    Trials,
    make_task,
)

# Small instances keep the contract fast; the defaults are covered too.
SMALL: dict[str, dict[str, Any]] = {
    "flipflop": {"n_time": 20},
    "sine": {"n_time": 30},
    "cdi": {"n_time": 25},
}
CASES = [(name, params) for name in TASKS for params in ({}, SMALL.get(name, {}))]
PROPS = settings(max_examples=25, deadline=None)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}{'-small' if c[1] else ''}")
def task(request: pytest.FixtureRequest) -> Task:
    name, params = request.param
    return make_task(name, **params)


# ---------------------------------------------------------------- contract


def test_every_task_has_small_params() -> None:
    assert set(SMALL) == set(TASKS)


def test_shapes_and_dtypes(task: Task) -> None:
    trials = task.sample(5, gen(0))
    b, t, i, o = 5, task.n_time, task.input_size, task.output_size
    assert trials.inputs.shape == (b, t, i)
    assert trials.targets.shape == (b, t, o)
    assert trials.mask.shape == (b, t, o)
    for x in (trials.inputs, trials.targets, trials.mask):
        assert x.dtype == torch.float32
        assert torch.isfinite(x).all()
    assert ((trials.mask == 0) | (trials.mask == 1)).all()
    assert trials.mask.sum() > 0


def test_seeds_reproduce_and_differ(task: Task) -> None:
    a, b, c = task.sample(32, gen(7)), task.sample(32, gen(7)), task.sample(32, gen(8))
    for field in ("inputs", "targets", "mask"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.inputs, c.inputs)
    assert not torch.equal(a.targets, c.targets)


def test_target_is_a_function_of_inputs(task: Task) -> None:
    trials = task.sample(8, gen(1))
    torch.testing.assert_close(task.target(trials.inputs).float(), trials.targets, atol=1e-5, rtol=0)


def test_conditions(task: Task) -> None:
    cond = task.conditions()
    assert cond.dim() == 2 and cond.shape[1] == task.input_size
    assert cond.dtype == torch.float32
    assert len(task.condition_labels()) == cond.shape[0]
    assert len(set(task.condition_labels())) == cond.shape[0]


def test_config_round_trips(task: Task) -> None:
    config = task.config()
    assert config["task"] == task.name and TASKS[task.name] is type(task)
    restored = json.loads(json.dumps(config))
    name = restored.pop("task")
    assert make_task(name, **restored) == task


def test_perfect_outputs(task: Task) -> None:
    trials = task.sample(16, gen(2))
    assert task.loss(trials.targets, trials).item() == 0.0
    score = task.score(trials.targets, trials)
    assert score.item() == (1.0 if task.higher_is_better else 0.0)
    assert task.passed(score).item()


def test_zero_outputs_fail(task: Task) -> None:
    trials = task.sample(16, gen(3))
    zeros = torch.zeros_like(trials.targets)
    assert task.loss(zeros, trials).item() > 0
    assert not task.passed(task.score(zeros, trials)).item()


def test_population_dims(task: Task) -> None:
    trials = task.sample(6, gen(4))
    outputs = trials.targets + 0.3 * torch.randn((3, 2, *trials.targets.shape), generator=gen(5))
    loss, score = task.loss(outputs, trials), task.score(outputs, trials)
    assert loss.shape == score.shape == task.passed(score).shape == (3, 2)
    for p in range(3):
        for q in range(2):
            torch.testing.assert_close(loss[p, q], task.loss(outputs[p, q], trials))
            torch.testing.assert_close(score[p, q], task.score(outputs[p, q], trials))
    # masked MSE, computed independently
    o, y, m = (x.double().numpy() for x in (outputs, trials.targets, trials.mask))
    expected = ((o - y) ** 2 * m).sum(axis=(-3, -2, -1)) / m.sum()
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_wrong_output_shape_raises(task: Task) -> None:
    trials = task.sample(2, gen(0))
    with pytest.raises(ValueError, match="shape"):
        task.loss(torch.zeros(2, task.n_time + 1, task.output_size), trials)


def test_bad_batch_size_raises(task: Task) -> None:
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            task.sample(bad, gen(0))  # type: ignore[arg-type]


# ---------------------------------------------------------------- registry


def test_make_task_unknown_name() -> None:
    with pytest.raises(ValueError, match="flipflop"):
        make_task("nope")


def test_make_task_unknown_param() -> None:
    with pytest.raises(ValueError, match="n_bits"):
        make_task("flipflop", n_bitz=3)


# ---------------------------------------------------------------- scores


def test_nmse_and_sign_accuracy_by_hand() -> None:
    y = torch.tensor([[[1.0], [-1.0], [1.0], [1.0]]])
    trials = Trials(y, y, torch.ones_like(y))
    out = torch.tensor([[[0.5], [-2.0], [-0.1], [0.0]]])
    assert FlipFlop(n_bits=1).score(out, trials).item() == pytest.approx(0.5)
    mse = (0.25 + 1.0 + 1.21 + 1.0) / 4
    var = float(np.var([1.0, -1.0, 1.0, 1.0]))
    assert SineWave().score(out, trials).item() == pytest.approx(mse / var)
    assert SineWave().passed(torch.tensor([0.009, 0.011, math.nan])).tolist() == [True, False, False]
    assert FlipFlop().passed(torch.tensor([0.9995, 0.998, math.nan])).tolist() == [True, False, False]


# ---------------------------------------------------------------- properties


@PROPS
@given(
    seed=st.integers(0, 2**31),
    n_bits=st.integers(1, 4),
    n_time=st.integers(1, 40),
    p_pulse=st.floats(0.0, 1.0),
)
def test_flipflop_holds_sign_of_last_pulse(seed: int, n_bits: int, n_time: int, p_pulse: float) -> None:
    task = FlipFlop(n_bits=n_bits, n_time=n_time, p_pulse=p_pulse)
    trials = task.sample(3, gen(seed))
    x, y = trials.inputs.numpy(), trials.targets.numpy()
    assert set(np.unique(x)) <= {-1.0, 0.0, 1.0}
    assert (x[:, 0] != 0).all()
    for b in range(3):
        for k in range(n_bits):
            last = 0.0
            for t in range(n_time):
                if x[b, t, k] != 0:
                    last = x[b, t, k]
                assert y[b, t, k] == last


def test_flipflop_pulse_rate() -> None:
    x = FlipFlop(p_pulse=0.1, n_time=200).sample(64, gen(0)).inputs[:, 1:]
    assert (x != 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert (x == 1).sum().item() == pytest.approx((x == -1).sum().item(), rel=0.1)


@PROPS
@given(
    seed=st.integers(0, 2**31),
    n_time=st.integers(1, 60),
    mean_max=st.floats(0.0, 2.0),
    noise=st.floats(0.01, 2.0),
    scale=st.floats(0.001, 1.0),
)
def test_cdi_integrates_the_selected_stream(
    seed: int, n_time: int, mean_max: float, noise: float, scale: float
) -> None:
    task = ContextIntegration(n_time=n_time, mean_max=mean_max, noise=noise, scale=scale)
    trials = task.sample(4, gen(seed))
    x = trials.inputs.double().numpy()
    context = x[:, :, 2:]
    assert ((context == 0) | (context == 1)).all() and (context.sum(-1) == 1).all()
    assert (context == context[:, :1]).all()
    expected = np.zeros((4, n_time, 1))
    for b in range(4):
        k = int(np.argmax(x[b, 0, 2:]))
        total = 0.0
        for t in range(n_time):
            total += x[b, t, k]
            expected[b, t, 0] = scale * total
    np.testing.assert_allclose(trials.targets.numpy(), expected, rtol=1e-4, atol=1e-5)
    # altering the ignored stream leaves the target unchanged
    altered = trials.inputs.clone()
    ignored = 1 - trials.inputs[:, 0, 2:].argmax(-1)
    altered[torch.arange(4), :, ignored] = torch.randn(4, n_time, generator=gen(seed + 1))
    torch.testing.assert_close(task.target(altered), trials.targets)
    # ... but altering the selected one changes it
    altered[torch.arange(4), :, 1 - ignored] += 1.0
    assert not torch.allclose(task.target(altered), trials.targets)


def test_cdi_stream_statistics() -> None:
    task = ContextIntegration(n_time=80, mean_max=0.8, noise=0.3, min_stimulus=20, max_stimulus=50)
    u = task.sample(2000, gen(0)).inputs[..., :2].double()
    on = u[:, :20]  # every stimulus lasts at least 20 steps
    mean = on.mean(1)
    assert mean.abs().max().item() <= 0.8 + 4 * 0.3 / math.sqrt(20)
    assert mean.std().item() == pytest.approx(0.8 / math.sqrt(3), rel=0.05)
    assert (on - on.mean(1, keepdim=True)).std().item() == pytest.approx(0.3, rel=0.05)


@PROPS
@given(seed=st.integers(0, 2**31), low=st.integers(1, 30), extra=st.integers(0, 30))
def test_cdi_stimulus_then_hold(seed: int, low: int, extra: int) -> None:
    """Each trial's streams are on for a length in [min_stimulus, max_stimulus], then exactly
    zero; the target holds its last stimulus value through the hold."""
    task = ContextIntegration(n_time=50, min_stimulus=low, max_stimulus=low + extra)
    trials = task.sample(64, gen(seed))
    sensory = trials.inputs[..., :2]
    nonzero = (sensory != 0).any(-1)  # [B, T]
    length = nonzero.sum(1)
    assert ((length >= min(low, 50)) & (length <= min(low + extra, 50))).all()
    assert (nonzero == (torch.arange(50)[None] < length[:, None])).all(), "the stimulus is one block from t = 0"
    for b in range(64):
        d = int(length[b])
        held = trials.targets[b, max(d - 1, 0):, 0]
        assert torch.equal(held, held[:1].expand_as(held))
    lengths = set(length.tolist())
    assert len(lengths) > 1 or extra == 0 or low >= 50


def test_cdi_hold_inputs_reach_their_values() -> None:
    task = ContextIntegration()
    values = torch.tensor([-1.0, -0.3, 0.0, 0.5, 1.0])
    for context in (0, 1):
        x = task.hold_inputs(values, context, stream=context, n_stimulus=25, n_hold=40)
        assert x.shape == (5, 65, 4)
        y = task.target(x)[..., 0]
        torch.testing.assert_close(y[:, 24], values)
        torch.testing.assert_close(y[:, -1], values)
        assert (x[:, 25:, :2] == 0).all() and (x[:, :, 2 + context] == 1).all()
        ignored = task.target(task.hold_inputs(values, context, stream=1 - context, n_stimulus=25, n_hold=40))
        assert (ignored == 0).all()
    assert task.output_range == pytest.approx(1.0)


@PROPS
@given(
    seed=st.integers(0, 2**31),
    n_freqs=st.integers(2, 60),
    n_time=st.integers(1, 150),
    w_min=st.floats(0.01, 1.0),
    width=st.floats(0.01, 1.0),
)
def test_sine_target_matches_decoded_frequency(
    seed: int, n_freqs: int, n_time: int, w_min: float, width: float
) -> None:
    task = SineWave(n_freqs=n_freqs, n_time=n_time, w_min=w_min, w_max=w_min + width)
    trials = task.sample(8, gen(seed))
    x = trials.inputs.double().numpy()
    assert (x == x[:, :1]).all()
    grid = np.linspace(w_min, w_min + width, n_freqs)
    t = np.arange(n_time)
    for b in range(8):
        j = round((x[b, 0, 0] - 0.25) * n_freqs)  # 1..n_freqs, as in Sussillo & Barak
        assert 1 <= j <= n_freqs
        assert abs(x[b, 0, 0] - (j / n_freqs + 0.25)) < 1e-6
        np.testing.assert_allclose(trials.targets[b, :, 0].numpy(), np.sin(grid[j - 1] * t), atol=1e-6)
        decoded = task.frequency_of(trials.inputs[b, 0, 0]).item()
        assert decoded == pytest.approx(grid[j - 1], abs=1e-5)


def test_sine_coding_is_sussillo_barak() -> None:
    task = SineWave()
    w = task.frequencies()
    assert w.shape == (51,) and w[0].item() == pytest.approx(0.1) and w[-1].item() == pytest.approx(0.6)
    j = torch.arange(51)
    torch.testing.assert_close(task.input_for(j), (j + 1).double() / 51 + 0.25)
    torch.testing.assert_close(task.frequency_of(task.input_for(j)), w)
    torch.testing.assert_close(task.conditions()[:, 0], task.input_for(j).float())
    counts = torch.bincount(
        ((task.sample(5100, gen(0)).inputs[:, 0, 0].double() - 0.25) * 51).round().long() - 1,
        minlength=51,
    )
    assert counts.min().item() > 50 and counts.max().item() < 150


def test_cdi_conditions() -> None:
    cond = ContextIntegration().conditions()
    assert cond.tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]


def test_flipflop_conditions() -> None:
    assert FlipFlop(n_bits=4).conditions().tolist() == [[0, 0, 0, 0]]


# ---------------------------------------------------------------- validation

BAD: list[tuple[str, dict[str, Any]]] = [
    ("flipflop", {"n_bits": 0}),
    ("flipflop", {"n_bits": 2.0}),
    ("flipflop", {"n_bits": True}),
    ("flipflop", {"n_time": -1}),
    ("flipflop", {"p_pulse": 1.5}),
    ("flipflop", {"p_pulse": -0.1}),
    ("flipflop", {"p_pulse": math.nan}),
    ("flipflop", {"pass_threshold": 1.2}),
    ("sine", {"n_freqs": 1}),
    ("sine", {"w_min": 0.6, "w_max": 0.1}),
    ("sine", {"w_max": 4.0}),
    ("sine", {"w_min": -0.1}),
    ("sine", {"n_time": 0}),
    ("sine", {"pass_threshold": -0.01}),
    ("sine", {"input_offset": math.inf}),
    ("cdi", {"noise": -1.0}),
    ("cdi", {"mean_max": -0.5}),
    ("cdi", {"mean_max": 0.0, "noise": 0.0}),
    ("cdi", {"scale": 0.0}),
    ("cdi", {"n_time": 0}),
    ("cdi", {"min_stimulus": 0}),
    ("cdi", {"max_stimulus": 5}),
    ("cdi", {"min_stimulus": 2.5}),
    ("cdi", {"pass_threshold": math.inf}),
]


@pytest.mark.parametrize(("name", "params"), BAD, ids=[f"{n}-{p}" for n, p in BAD])
def test_invalid_parameters_raise(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="|".join(params)):
        make_task(name, **params)


@PROPS
@given(name=st.sampled_from(sorted(TASKS)), n_time=st.integers(-100, 0))
def test_non_positive_n_time_raises(name: str, n_time: int) -> None:
    with pytest.raises(ValueError, match="n_time"):
        make_task(name, n_time=n_time)


@PROPS
@given(p=st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1 + 1e-9)))
def test_pulse_probability_outside_unit_interval_raises(p: float) -> None:
    with pytest.raises(ValueError, match="p_pulse"):
        FlipFlop(p_pulse=p)


def _leaky_score(task: ContextIntegration, tau: float) -> float:
    """The task's score of the leaky integrator ``y' = exp(-1/tau) y + g scale u_ctx`` with the
    readout gain ``g`` that minimises its squared error (least squares)."""
    trials = task.sample(2048, gen(3))
    ctx = trials.inputs[:, 0, 2:].argmax(-1)
    u = trials.inputs[..., :2].gather(-1, ctx[:, None, None].expand(-1, task.n_time, 1)).double()
    decay, h, ys = math.exp(-1 / tau), torch.zeros(len(u), 1, dtype=torch.float64), []
    for t in range(task.n_time):
        h = decay * h + task.scale * u[:, t]
        ys.append(h)
    y = torch.stack(ys, 1)
    target = trials.targets.double()
    gain = (y * target).sum() / (y * y).sum()
    return float(task.score((gain * y).float(), trials))


def test_cdi_pass_threshold_separates_leaky_from_line_integrators() -> None:
    """The cdi target passes an integrator that keeps >= 0.8 over a trial only when it leaks
    no faster than that: tau = 2T fails, tau = 10T passes (docs/methods.md)."""
    task = ContextIntegration()
    assert not bool(task.passed(torch.tensor(_leaky_score(task, 2 * task.n_time))))
    assert bool(task.passed(torch.tensor(_leaky_score(task, 10 * task.n_time))))
