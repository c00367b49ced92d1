"""Cells: each member's step equals torch.nn's reference cell loaded with its weights."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from universality.cells import CELLS, GRU, LSTM, UGRNN, ModuleCell, Vanilla, make_cell

sizes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 9), st.integers(1, 6))  # P, B, H, I


def stacked(cell, p, i, h, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    per = [cell.init_params(i, h, gen) for _ in range(p)]
    # perturb every parameter (biases start at constants) so the test sees all of them
    return {k: (torch.stack([q[k] for q in per]) + 0.3 * torch.randn(p, *per[0][k].shape, generator=gen)).to(dtype)
            for k in per[0]}


def torch_cell(kind, i, h, activation, params, member, dtype):
    if kind == "vanilla":
        ref = nn.RNNCell(i, h, nonlinearity=activation)
    elif kind == "gru":
        ref = nn.GRUCell(i, h)
    else:
        ref = nn.LSTMCell(i, h)
    ref = ref.to(dtype)
    with torch.no_grad():
        for name, value in ref.named_parameters():
            value.copy_(params[name][member])
    return ref


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("kind", ["vanilla", "gru", "lstm"])
@given(shape=sizes, seed=st.integers(0, 2**31 - 1), activation=st.sampled_from(["tanh", "relu"]))
def test_members_match_torch_cells(kind, dtype, tol, shape, seed, activation):
    p, b, h, i = shape
    if kind != "vanilla":
        activation = "tanh"  # torch's GRU/LSTM cells have tanh only
    cell = make_cell(kind, activation)
    params = stacked(cell, p, i, h, seed, dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(p, b, i, generator=gen, dtype=dtype)
    state = torch.randn(p, b, cell.state_size(h), generator=gen, dtype=dtype)
    out = cell.step(params, x, state)
    assert out.shape == (p, b, cell.state_size(h))
    for m in range(p):
        ref = torch_cell(kind, i, h, activation, params, m, dtype)
        with torch.no_grad():
            if kind == "lstm":
                hh, cc = ref(x[m], (state[m, :, :h], state[m, :, h:]))
                expected = torch.cat([hh, cc], dim=-1)
            else:
                expected = ref(x[m], state[m])
        torch.testing.assert_close(out[m], expected, atol=tol, rtol=tol)


def ugrnn_reference(params, x, h, act):
    """UGRNN written out per member from its equations (Collins et al. 2017)."""
    hsize = h.shape[-1]
    w_ih, w_hh, b_ih, b_hh = params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    u = torch.sigmoid(pre[:, :hsize])
    c = act(pre[:, hsize:])
    return u * h + (1 - u) * c


@given(shape=sizes, seed=st.integers(0, 2**31 - 1), activation=st.sampled_from(["tanh", "relu"]))
def test_ugrnn_matches_its_equations(shape, seed, activation):
    p, b, h, i = shape
    cell = UGRNN(activation)
    params = stacked(cell, p, i, h, seed, torch.float64)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(p, b, i, generator=gen, dtype=torch.float64)
    state = torch.randn(p, b, h, generator=gen, dtype=torch.float64)
    out = cell.step(params, x, state)
    act = torch.tanh if activation == "tanh" else torch.relu
    for m in range(p):
        expected = ugrnn_reference({k: v[m] for k, v in params.items()}, x[m], state[m], act)
        torch.testing.assert_close(out[m], expected, atol=1e-12, rtol=1e-12)


def test_relu_replaces_candidate_nonlinearity_but_gates_stay_sigmoid():
    """With huge negative candidate pre-activations relu gives exactly 0, tanh gives -1."""
    for cls in (GRU, UGRNN, LSTM):
        outs = {}
        for act in ("tanh", "relu"):
            cell = cls(act)
            params = {k: v.unsqueeze(0) for k, v in cell.init_params(1, 2, torch.Generator().manual_seed(0)).items()}
            for v in params.values():
                v.zero_()
            # drive the candidate block strongly negative through its input weight
            w = params["weight_ih"]
            n_gates = {GRU: 3, UGRNN: 2, LSTM: 4}[cls]
            cand_block = {GRU: 2, UGRNN: 1, LSTM: 2}[cls]
            w.view(1, n_gates, 2, 1)[:, cand_block] = -50.0
            state = torch.zeros(1, 1, cell.state_size(2))
            outs[act] = cell.step(params, torch.ones(1, 1, 1), state)
        assert torch.all(outs["relu"] == 0)
        assert torch.all(outs["tanh"] < 0), cls  # sigmoid gates pass half of the -1 candidate


def test_registry_and_errors():
    assert set(CELLS) == {"vanilla", "gru", "lstm", "ugrnn"}
    assert isinstance(make_cell("vanilla", "relu"), Vanilla)
    with pytest.raises(ValueError, match="unknown architecture"):
        make_cell("transformer")
    with pytest.raises(ValueError, match="unknown activation"):
        make_cell("gru", "gelu")


class TinyCell(nn.Module):
    """A user cell: leaky tanh RNN with its own parameter names."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        self.leak = nn.Parameter(torch.full((hidden_size,), 0.5))

    def forward(self, x, h):
        return self.leak * h + (1 - self.leak) * torch.tanh(self.inp(x) + self.rec(h))


@given(p=st.integers(1, 4), b=st.integers(1, 4), seed=st.integers(0, 1000))
def test_module_cell_matches_each_module(p, b, seed):
    cell = ModuleCell(TinyCell)
    gen = torch.Generator().manual_seed(seed)
    per = [cell.init_params(3, 5, gen) for _ in range(p)]
    params = {k: torch.stack([q[k] for q in per]) for k in per[0]}
    x = torch.randn(p, b, 3, generator=gen)
    h = torch.randn(p, b, 5, generator=gen)
    out = cell.step(params, x, h)
    for m in range(p):
        module = TinyCell(3, 5)
        module.load_state_dict(per[m])
        with torch.no_grad():
            torch.testing.assert_close(out[m], module(x[m], h[m]), atol=1e-6, rtol=1e-6)
    # members differ (independent initialisations) and init depends only on the generator
    if p > 1:
        assert not torch.equal(per[0]["inp.weight"], per[1]["inp.weight"])
    again = ModuleCell(TinyCell).init_params(3, 5, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(again["inp.weight"], per[0]["inp.weight"])


def test_module_cell_rejects_non_modules():
    cell = ModuleCell(lambda i, h: "not a module")
    with pytest.raises(TypeError, match="must return a torch.nn.Module"):
        cell.init_params(1, 2, torch.Generator())


@pytest.mark.parametrize("arch", sorted(CELLS))
@given(shape=sizes, seed=st.integers(0, 2**31 - 1), activation=st.sampled_from(["tanh", "relu"]))
def test_closed_form_jacobians_equal_autodiff(arch, shape, seed, activation):
    from torch.func import jacrev

    p, b, h, i = shape
    cell = make_cell(arch, activation)
    params = stacked(cell, p, i, h, seed, torch.float64)
    gen = torch.Generator().manual_seed(seed)
    state = torch.randn(p, b, cell.state_size(h), generator=gen, dtype=torch.float64)
    x = torch.randn(p, b, i, generator=gen, dtype=torch.float64)
    f, jac = cell.recur_jacobian(params, cell.drive(params, x), state)
    torch.testing.assert_close(f, cell.step(params, x, state), atol=1e-14, rtol=0)
    for m in range(p):
        for r in range(b):
            def one(v, m=m, r=r):
                full = state.clone()
                full[m, r] = v
                return cell.step(params, x, full)[m, r]
            torch.testing.assert_close(jac[m, r], jacrev(one)(state[m, r]), atol=1e-12, rtol=1e-12)
