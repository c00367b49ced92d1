"""Fused recurrences of the built-in cells: a whole sequence forward, an analytic backward.

``scan(kernel, params, x, state)`` runs a cell over a sequence inside one autograd
function, with a memory layout chosen for backpropagation through time:

* **gate-major, time-major buffers.** Every per-gate quantity lives in ``[P, T, G, B, H]``
  (forward) or ``[P, G, T, B, H]`` (gradients) buffers, so the step-t slice of one gate is
  a ``[P, B, H]`` batch of contiguous ``B x H`` blocks: elementwise kernels run over long
  contiguous rows, and ``bmm`` reads and writes them in place. (Slicing a gate out of
  ``[B, G*H]`` rows instead leaves rows of H numbers, and the per-row overhead of torch's
  elementwise loops then dominates at H = 32.)
* **one GEMM per gate and step** forward (its input already holding the input projection
  and the biases), written into a contiguous buffer (a batch-strided ``out`` makes torch
  fall back to one GEMM per member), and one per gate and step backward; every other
  per-step operation is written into a preallocated buffer, the derivatives by torch's own
  backward kernels (``sigmoid_backward``, ``tanh_backward``, ``threshold_backward``);
* **weight gradients as one GEMM per gate over all T*B rows** of a member, the input
  projection as one GEMM per gate over the whole sequence.

Each kernel is written for one cell family and any activation of the registry
(:mod:`.activations`). Gradients equal autograd's through the plain step to 1e-10 in
float64 (tests: every arch x activation, hypothesis over shapes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .activations import Activation, sigmoid_backward


@dataclass(frozen=True)
class Weights:
    """A cell's stacked parameters: ``weight_ih [P, G*H, I]``, ``bias_ih [P, G*H]``,
    ``weight_hh [P, G*H, H]``, ``bias_hh [P, G*H]`` (G gate blocks of H rows)."""

    weight_ih: Tensor
    bias_ih: Tensor
    weight_hh: Tensor
    bias_hh: Tensor

    @property
    def hidden(self) -> int:
        return self.weight_hh.shape[-1]

    def recurrent(self, k: int) -> Tensor:
        """Gate k's recurrent block ``[P, H, H]`` (rows: the gate's units)."""
        h = self.hidden
        return self.weight_hh[:, k * h : (k + 1) * h]


Forward = tuple[Tensor, tuple[Tensor, ...], Tensor]  # states, saved for backward, h_prev
Backward = tuple[Tensor, list[Tensor], list[Tensor]]  # d_state0, drive gradients, recurrent ones


class Kernel(ABC):
    """Forward and backward of one cell family over a sequence.

    ``forward`` returns the states ``[P, T, B, S]``, the tensors its backward needs and the
    states each step reads (``h_prev [P, T, B, H]``, for the weight gradients); ``backward``
    returns ``d_state0 [P, B, S]`` and the per-gate gradients ``[P, T, B, H]`` of the input
    projection and of the recurrent term ``W_hh h + b_hh``."""

    def __init__(self, act: Activation) -> None:
        self.act = act

    @abstractmethod
    def forward(self, x: Tensor, state0: Tensor, w: Weights, ws: Workspace) -> Forward:
        """``x [P, T*B, I]`` (rows of the time-major inputs), ``state0 [P, B, S]``."""

    @abstractmethod
    def backward(self, d_states: Tensor, saved: tuple[Tensor, ...], w: Weights, ws: Workspace) -> Backward:
        """Gradients from ``d_states [P, T, B, S]`` (see the class docstring)."""


def _drive(x: Tensor, w: Weights, shape: tuple[int, int], ws: Workspace, fold: tuple[bool, ...]) -> Tensor:
    """The input projection, gate-major: ``[P, G, T, B, H]`` from ``x [P, T*B, I]``; gate k
    also holds the recurrent bias where ``fold[k]`` (the recurrent term then needs none)."""
    p, h, (n_time, b) = x.shape[0], w.hidden, shape
    drive = ws.get("drive", (p, len(fold), n_time, b, h), x)
    for k, folded in enumerate(fold):
        rows = slice(k * h, (k + 1) * h)
        bias = w.bias_ih[:, rows] + w.bias_hh[:, rows] if folded else w.bias_ih[:, rows]
        out = drive[:, k].view(p, n_time * b, h)
        torch.baddbmm(bias.unsqueeze(1), x, w.weight_ih[:, rows].transpose(1, 2), out=out)
    return drive


class VanillaKernel(Kernel):
    """``h' = f(W_ih x + b_ih + W_hh h + b_hh)``."""

    def forward(self, x: Tensor, state0: Tensor, w: Weights, ws: Workspace) -> Forward:
        p, b, h = state0.shape
        n_time = x.shape[1] // b
        drive = _drive(x, w, (n_time, b), ws, (True,))
        states = ws.get("states", (p, n_time + 1, b, h), x)
        states[:, 0] = state0
        pre = ws.get("pre", (p, b, h), x)
        w_t = w.weight_hh.transpose(1, 2)
        for t in range(n_time):
            self.act.fn_out(torch.baddbmm(drive[:, 0, t], states[:, t], w_t, out=pre), states[:, t + 1])
        return states[:, 1:], (states,), states[:, :-1]

    def backward(self, d_states: Tensor, saved: tuple[Tensor, ...], w: Weights, ws: Workspace) -> Backward:
        (states,) = saved
        p, n_time, b, h = d_states.shape
        grad = ws.get("grad", (p, 1, n_time, b, h), d_states)
        dh = ws.get("dh", (p, b, h), d_states)
        rec = ws.get("rec", (p, b, h), d_states).zero_()
        for t in range(n_time - 1, -1, -1):
            torch.add(d_states[:, t], rec, out=dh)
            self.act.backward(dh, states[:, t + 1], grad[:, 0, t])
            torch.bmm(grad[:, 0, t], w.weight_hh, out=rec)
        return rec, [grad[:, 0]], [grad[:, 0]]


class UGRNNKernel(Kernel):
    """``u = σ(.), c = f(.), h' = c + u (h - c)``; gates (u, c)."""

    def forward(self, x: Tensor, state0: Tensor, w: Weights, ws: Workspace) -> Forward:
        p, b, h = state0.shape
        n_time = x.shape[1] // b
        drive = _drive(x, w, (n_time, b), ws, (True, True))
        states = ws.get("states", (p, n_time + 1, b, h), x)
        states[:, 0] = state0
        gates = ws.get("gates", (p, n_time, 2, b, h), x)  # u, c
        diff, pre = ws.get("diff", (p, b, h), x), ws.get("pre", (p, b, h), x)
        w_u, w_c = (w.recurrent(k).transpose(1, 2) for k in range(2))
        for t in range(n_time):
            h_t, g = states[:, t], gates[:, t]
            u = torch.sigmoid(torch.baddbmm(drive[:, 0, t], h_t, w_u, out=pre), out=g[:, 0])
            c = self.act.fn_out(torch.baddbmm(drive[:, 1, t], h_t, w_c, out=pre), g[:, 1])
            torch.addcmul(c, u, torch.sub(h_t, c, out=diff), out=states[:, t + 1])
        return states[:, 1:], (states, gates), states[:, :-1]

    def backward(self, d_states: Tensor, saved: tuple[Tensor, ...], w: Weights, ws: Workspace) -> Backward:
        states, gates = saved
        p, n_time, b, h = d_states.shape
        grad = ws.get("grad", (p, 2, n_time, b, h), d_states)
        dh, dhu, tmp = (ws.get(k, (p, b, h), d_states) for k in ("dh", "dhu", "tmp"))
        rec = ws.get("rec", (p, b, h), d_states).zero_()
        w_u, w_c = w.recurrent(0), w.recurrent(1)
        for t in range(n_time - 1, -1, -1):
            u, c = gates[:, t, 0], gates[:, t, 1]
            torch.add(d_states[:, t], rec, out=dh)
            sigmoid_backward(torch.sub(states[:, t], c, out=tmp).mul_(dh), u, grad[:, 0, t])
            torch.mul(dh, u, out=dhu)
            self.act.backward(torch.sub(dh, dhu, out=tmp), c, grad[:, 1, t])
            torch.baddbmm(dhu, grad[:, 0, t], w_u, out=rec).baddbmm_(grad[:, 1, t], w_c)
        blocks = [grad[:, 0], grad[:, 1]]
        return rec, blocks, blocks


class GRUKernel(Kernel):
    """torch's GRU: ``r, z = σ(.), n = f(W_in x + b_in + r (W_hn h + b_hn)), h' = n + z (h - n)``;
    gates (r, z, n)."""

    def forward(self, x: Tensor, state0: Tensor, w: Weights, ws: Workspace) -> Forward:
        p, b, h = state0.shape
        n_time = x.shape[1] // b
        drive = _drive(x, w, (n_time, b), ws, (True, True, False))
        states = ws.get("states", (p, n_time + 1, b, h), x)
        states[:, 0] = state0
        gates = ws.get("gates", (p, n_time, 4, b, h), x)  # r, z, n, W_hn h + b_hn
        diff, pre, hn = ws.get("diff", (p, b, h), x), ws.get("pre", (p, b, h), x), ws.get("hn", (p, b, h), x)
        w_r, w_z, w_n = (w.recurrent(k).transpose(1, 2) for k in range(3))
        b_n = w.bias_hh[:, 2 * h :].unsqueeze(1)
        for t in range(n_time):
            h_t, g = states[:, t], gates[:, t]
            r = torch.sigmoid(torch.baddbmm(drive[:, 0, t], h_t, w_r, out=pre), out=g[:, 0])
            z = torch.sigmoid(torch.baddbmm(drive[:, 1, t], h_t, w_z, out=pre), out=g[:, 1])
            g[:, 3].copy_(torch.baddbmm(b_n, h_t, w_n, out=hn))
            n = self.act.fn_(torch.addcmul(drive[:, 2, t], r, hn, out=g[:, 2]))
            torch.addcmul(n, z, torch.sub(h_t, n, out=diff), out=states[:, t + 1])
        return states[:, 1:], (states, gates), states[:, :-1]

    def backward(self, d_states: Tensor, saved: tuple[Tensor, ...], w: Weights, ws: Workspace) -> Backward:
        states, gates = saved
        p, n_time, b, h = d_states.shape
        grad = ws.get("grad", (p, 4, n_time, b, h), d_states)  # d drive r, z, n; d (W_hn h + b_hn)
        dh, dhz, tmp = (ws.get(k, (p, b, h), d_states) for k in ("dh", "dhz", "tmp"))
        rec = ws.get("rec", (p, b, h), d_states).zero_()
        w_r, w_z, w_n = (w.recurrent(k) for k in range(3))
        for t in range(n_time - 1, -1, -1):
            r, z, n, hn = (gates[:, t, k] for k in range(4))
            torch.add(d_states[:, t], rec, out=dh)
            torch.mul(dh, z, out=dhz)
            dn = self.act.backward(torch.sub(dh, dhz, out=tmp), n, grad[:, 2, t])
            sigmoid_backward(torch.sub(states[:, t], n, out=tmp).mul_(dh), z, grad[:, 1, t])
            sigmoid_backward(torch.mul(dn, hn, out=tmp), r, grad[:, 0, t])
            torch.mul(dn, r, out=grad[:, 3, t])
            torch.baddbmm(dhz, grad[:, 0, t], w_r, out=rec).baddbmm_(grad[:, 1, t], w_z).baddbmm_(grad[:, 3, t], w_n)
        return rec, [grad[:, 0], grad[:, 1], grad[:, 2]], [grad[:, 0], grad[:, 1], grad[:, 3]]


class LSTMKernel(Kernel):
    """``c' = σ(f) c + σ(i) g(.)``, ``h' = σ(o) g(c')``, state ``[h, c]``; gates (i, f, g, o)."""

    def forward(self, x: Tensor, state0: Tensor, w: Weights, ws: Workspace) -> Forward:
        p, b, s = state0.shape
        h, n_time = s // 2, x.shape[1] // b
        drive = _drive(x, w, (n_time, b), ws, (True,) * 4)
        hs, cs = (ws.get(k, (p, n_time + 1, b, h), x) for k in ("hs", "cs"))
        hs[:, 0], cs[:, 0] = state0[..., :h], state0[..., h:]
        gates = ws.get("gates", (p, n_time, 5, b, h), x)  # i, f, g, o, act(c')
        pre = ws.get("pre", (p, b, h), x)
        w_t = [w.recurrent(k).transpose(1, 2) for k in range(4)]
        for t in range(n_time):
            g = gates[:, t]
            for k in range(4):
                torch.baddbmm(drive[:, k, t], hs[:, t], w_t[k], out=pre)
                if k == 2:
                    self.act.fn_out(pre, g[:, k])
                else:
                    torch.sigmoid(pre, out=g[:, k])
            c_new = torch.mul(g[:, 1], cs[:, t], out=cs[:, t + 1]).addcmul_(g[:, 0], g[:, 2])
            torch.mul(g[:, 3], self.act.fn_(g[:, 4].copy_(c_new)), out=hs[:, t + 1])
        out = ws.get("out", (p, n_time, b, s), x)
        torch.cat([hs[:, 1:], cs[:, 1:]], dim=-1, out=out)
        return out, (cs, gates), hs[:, :-1]

    def backward(self, d_states: Tensor, saved: tuple[Tensor, ...], w: Weights, ws: Workspace) -> Backward:
        cs, gates = saved
        p, n_time, b, s = d_states.shape
        h = s // 2
        d_hs, d_cs = (ws.get(k, (p, n_time, b, h), d_states) for k in ("d_hs", "d_cs"))
        d_hs.copy_(d_states[..., :h])
        d_cs.copy_(d_states[..., h:])
        grad = ws.get("grad", (p, 4, n_time, b, h), d_states)
        dh, dc, tmp = (ws.get(k, (p, b, h), d_states) for k in ("dh", "dc", "tmp"))
        rec_h, rec_c = ws.get("rec_h", (p, b, h), d_states).zero_(), ws.get("rec_c", (p, b, h), d_states).zero_()
        w_k = [w.recurrent(k) for k in range(4)]
        for t in range(n_time - 1, -1, -1):
            i, f, g, o, a = (gates[:, t, k] for k in range(5))
            torch.add(d_hs[:, t], rec_h, out=dh)
            self.act.backward(torch.mul(dh, o, out=tmp), a, dc)
            dc.add_(d_cs[:, t]).add_(rec_c)
            sigmoid_backward(torch.mul(dh, a, out=tmp), o, grad[:, 3, t])
            sigmoid_backward(torch.mul(dc, g, out=tmp), i, grad[:, 0, t])
            sigmoid_backward(torch.mul(dc, cs[:, t], out=tmp), f, grad[:, 1, t])
            self.act.backward(torch.mul(dc, i, out=tmp), g, grad[:, 2, t])
            torch.mul(dc, f, out=rec_c)
            torch.bmm(grad[:, 0, t], w_k[0], out=rec_h)
            for k in range(1, 4):
                rec_h.baddbmm_(grad[:, k, t], w_k[k])
        blocks = [grad[:, k] for k in range(4)]
        return torch.cat([rec_h, rec_c], dim=-1), blocks, blocks


def _rows(t: Tensor) -> Tensor:
    """``[P, T, B, X] -> [P, T*B, X]`` (a view for the buffers' slices)."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def _block_grads(blocks: list[Tensor], rows: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of ``W r + b`` given per-gate output gradients ``blocks`` (each ``[P, T, B,
    H]``) and the rows ``r [P, T*B, K]`` it read: ``(dW [P, G*H, K], db [P, G*H])``, one
    GEMM per gate over all T*B rows."""
    rows_t = rows.transpose(1, 2)
    d_weight = torch.cat([torch.bmm(rows_t, _rows(g)).transpose(1, 2) for g in blocks], dim=1)
    return d_weight, torch.cat([_rows(g).sum(1) for g in blocks], dim=1)


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, kernel: Kernel, ws: Workspace, x: Tensor, state0: Tensor,
        weight_ih: Tensor, bias_ih: Tensor, weight_hh: Tensor, bias_hh: Tensor,
    ) -> Tensor:
        w = Weights(weight_ih, bias_ih, weight_hh, bias_hh)
        x_rows = _rows(x)
        states, saved, h_prev = kernel.forward(x_rows, state0, w, ws)
        ctx.kernel, ctx.ws, ctx.x_shape = kernel, ws, x.shape
        ctx.save_for_backward(x_rows, h_prev, weight_ih, bias_ih, weight_hh, bias_hh, *saved)
        return states

    @staticmethod
    def backward(ctx: Any, d_states: Tensor) -> tuple[Tensor | None, ...]:
        x_rows, h_prev, *weights, = ctx.saved_tensors[:6]
        w = Weights(*weights)
        d_state0, drive_blocks, rec_blocks = ctx.kernel.backward(d_states, tuple(ctx.saved_tensors[6:]), w, ctx.ws)
        needs = ctx.needs_input_grad
        d_x: Tensor | None = None
        if needs[2]:
            h = w.hidden
            d_x = torch.stack([torch.bmm(_rows(g), w.weight_ih[:, k * h : (k + 1) * h])
                               for k, g in enumerate(drive_blocks)]).sum(0).view(ctx.x_shape)
        d_weight_ih, d_bias_ih = _block_grads(drive_blocks, x_rows) if needs[4] or needs[5] else (None, None)
        d_weight_hh, d_bias_hh = _block_grads(rec_blocks, _rows(h_prev)) if needs[6] or needs[7] else (None, None)
        return None, None, d_x, d_state0 if needs[3] else None, d_weight_ih, d_bias_ih, d_weight_hh, d_bias_hh


class Workspace:
    """Buffers reused by successive :func:`scan` calls of the same shapes.

    Fresh multi-megabyte buffers cost page faults on every step (docs/performance.md,
    "Training"). A workspace serves one forward/backward at a time: the states it returns
    are overwritten by the next call (autograd refuses a backward run after that)."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...] | torch.Size, like: Tensor) -> Tensor:
        """The buffer ``name`` of ``shape`` with ``like``'s dtype and device (uninitialised)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != like.dtype or buf.device != like.device:
            buf = like.new_empty(tuple(shape))
            self._buffers[name] = buf
        return buf


def scan(kernel: Kernel, params: dict[str, Tensor], x: Tensor, state: Tensor, ws: Workspace | None = None) -> Tensor:
    """Run ``kernel``'s cell over a sequence: inputs ``x [P, T, B, I]`` (time-major),
    initial ``state [P, B, S]``, parameters ``weight_ih [P, D, I]``, ``bias_ih [P, D]``,
    ``weight_hh [P, D, H]``, ``bias_hh [P, D]`` -> states ``[P, T, B, S]``; differentiable
    in every tensor. ``ws``: reuse buffers across calls (training); default fresh ones."""
    return _Scan.apply(
        kernel, Workspace() if ws is None else ws, x, state,
        params["weight_ih"], params["bias_ih"], params["weight_hh"], params["bias_hh"],
    )
