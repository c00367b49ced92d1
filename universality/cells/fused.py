"""Fused recurrences of the built-in cells: a whole sequence forward, an analytic backward.

``scan(kernel, drive, state, weight_hh, bias_hh)`` runs a recurrence over time with
the layout that makes backpropagation through time cheap:

* time-major per member: ``drive [P, T, B, D]``, states ``[P, T, B, S]``, so the step-t
  slices are batched matrices ``[P, B, .]`` that ``bmm`` reads in place, and all T*B rows
  of one member are contiguous for the weight gradients;
* the backward loop over time runs one ``bmm`` with the recurrent weights and a few
  elementwise products per step, each written into a preallocated buffer with torch's
  own backward kernels (``sigmoid_backward``, ``tanh_backward``, ``threshold_backward``);
* the recurrent weight gradient is one GEMM per member over all T*B rows
  (``dW = G^T H_prev`` with ``G [P, T*B, D]``), the bias gradient one reduction.

Each kernel is written for one cell family and any activation whose derivative is a
function of its output (see :class:`universality.cells.base.Activation`). Gradients equal
autograd's through the plain step (tests: float64, every arch x activation). The input
projection (``drive``) stays outside, so autograd turns its gradient into one GEMM too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from .activations import Activation, sigmoid_backward

Grads = tuple[Tensor, Tensor, Tensor, Tensor]


class Kernel(ABC):
    """Forward and backward of one cell family's recurrence (shapes as in :func:`scan`).

    Every per-step operation writes into preallocated buffers (``out=`` or in place): at
    the sizes of these networks, allocating a fresh tensor per operation costs more than
    the arithmetic (docs/performance.md, "Training")."""

    def __init__(self, act: Activation) -> None:
        self.act = act

    @abstractmethod
    def forward(self, drive: Tensor, states: Tensor, w_t: Tensor, bias: Tensor, ws: Workspace) -> tuple[Tensor, ...]:
        """Fill ``states [P, T+1, B, S]`` (slot 0 holds the initial state) given ``drive
        [P, T, B, D]``, ``w_t [P, H, D]`` (the recurrent weight transposed) and ``bias
        [P, D]``; return the intermediates the backward needs."""

    @abstractmethod
    def backward(
        self, d_states: Tensor, states: Tensor, weight: Tensor, saved: tuple[Tensor, ...], ws: Workspace
    ) -> Grads:
        """``(d_drive [P, T, B, D], d_state0 [P, B, S], d_weight_hh [P, D, H], d_bias_hh [P, D])``
        from ``d_states [P, T, B, S]``."""


class VanillaKernel(Kernel):
    """``h' = f(d + W h + b)``."""

    def forward(self, drive: Tensor, states: Tensor, w_t: Tensor, bias: Tensor, ws: Workspace) -> tuple[Tensor, ...]:
        bias = bias.unsqueeze(1)
        for t in range(drive.shape[1]):
            out = torch.baddbmm(bias, states[:, t], w_t, out=states[:, t + 1])
            self.act.fn_(out.add_(drive[:, t]))
        return ()

    def backward(
        self, d_states: Tensor, states: Tensor, weight: Tensor, saved: tuple[Tensor, ...], ws: Workspace
    ) -> Grads:
        grad = ws.get("grad", d_states.shape, d_states)
        dh = ws.get("dh", d_states[:, 0].shape, d_states)
        rec = ws.get("rec", dh.shape, dh).zero_()
        for t in range(d_states.shape[1] - 1, -1, -1):
            torch.add(d_states[:, t], rec, out=dh)
            self.act.backward(dh, states[:, t + 1], grad[:, t])
            torch.bmm(grad[:, t], weight, out=rec)
        return (grad, rec, *_recurrent_grads(grad, states))


class UGRNNKernel(Kernel):
    """``u = σ(.), c = f(.), h' = c + u (h - c)``; blocks (u, c)."""

    def forward(self, drive: Tensor, states: Tensor, w_t: Tensor, bias: Tensor, ws: Workspace) -> tuple[Tensor, ...]:
        p, n_time, b, d = drive.shape
        h = d // 2
        gates = ws.get("gates", (p, n_time, b, d), drive)  # u, c
        pre = ws.get("pre", (p, b, d), drive)
        diff = ws.get("diff", (p, b, h), drive)
        bias = bias.unsqueeze(1)
        for t in range(n_time):
            torch.baddbmm(bias, states[:, t], w_t, out=pre).add_(drive[:, t])
            u, c = gates[:, t, :, :h], gates[:, t, :, h:]
            torch.sigmoid(pre[..., :h], out=u)
            c.copy_(self.act.fn_(pre[..., h:]))
            torch.sub(states[:, t], c, out=diff)
            torch.addcmul(c, u, diff, out=states[:, t + 1])
        return (gates,)

    def backward(
        self, d_states: Tensor, states: Tensor, weight: Tensor, saved: tuple[Tensor, ...], ws: Workspace
    ) -> Grads:
        (gates,) = saved
        h = gates.shape[-1] // 2
        grad = ws.get("grad", gates.shape, gates)
        dh, dhu, tmp = (ws.get(k, d_states[:, 0].shape, gates) for k in ("dh", "dhu", "tmp"))
        rec = ws.get("rec", dh.shape, dh).zero_()
        for t in range(d_states.shape[1] - 1, -1, -1):
            u, c, g = gates[:, t, :, :h], gates[:, t, :, h:], grad[:, t]
            torch.add(d_states[:, t], rec, out=dh)
            torch.sub(states[:, t], c, out=tmp).mul_(dh)
            sigmoid_backward(tmp, u, g[..., :h])
            torch.mul(dh, u, out=dhu)
            self.act.backward(torch.sub(dh, dhu, out=tmp), c, g[..., h:])
            torch.baddbmm(dhu, g, weight, out=rec)
        return (grad, rec, *_recurrent_grads(grad, states))


class GRUKernel(Kernel):
    """torch's GRU: ``r, z = σ(.), n = f(d_n + r (W_n h + b_n)), h' = n + z (h - n)``;
    blocks (r, z, n)."""

    def forward(self, drive: Tensor, states: Tensor, w_t: Tensor, bias: Tensor, ws: Workspace) -> tuple[Tensor, ...]:
        p, n_time, b, d = drive.shape
        h = d // 3
        gates = ws.get("gates", (p, n_time, b, 4 * h), drive)  # r, z, n, W_n h + b_n
        gh = ws.get("gh", (p, b, d), drive)
        diff = ws.get("diff", (p, b, h), drive)
        bias = bias.unsqueeze(1)
        for t in range(n_time):
            torch.baddbmm(bias, states[:, t], w_t, out=gh)
            gt = gates[:, t]
            torch.add(drive[:, t, :, : 2 * h], gh[..., : 2 * h], out=gt[..., : 2 * h]).sigmoid_()
            gt[..., 3 * h :] = gh[..., 2 * h :]
            n = torch.addcmul(drive[:, t, :, 2 * h :], gt[..., :h], gh[..., 2 * h :], out=gt[..., 2 * h : 3 * h])
            self.act.fn_(n)
            torch.sub(states[:, t], n, out=diff)
            torch.addcmul(n, gt[..., h : 2 * h], diff, out=states[:, t + 1])
        return (gates,)

    def backward(
        self, d_states: Tensor, states: Tensor, weight: Tensor, saved: tuple[Tensor, ...], ws: Workspace
    ) -> Grads:
        (gates,) = saved
        h = gates.shape[-1] // 4
        grad = ws.get("grad", (*gates.shape[:-1], 3 * h), gates)  # d drive: r, z, n blocks
        d_hn = ws.get("d_hn", (*gates.shape[:-1], h), gates)  # d (W_n h + b_n) = r dn_pre
        dh, dhz, tmp = (ws.get(k, d_states[:, 0].shape, gates) for k in ("dh", "dhz", "tmp"))
        rec = ws.get("rec", dh.shape, dh).zero_()
        w_rz, w_n = weight[:, : 2 * h], weight[:, 2 * h :]
        for t in range(d_states.shape[1] - 1, -1, -1):
            gt, g = gates[:, t], grad[:, t]
            r, z, n, hn = (gt[..., k * h : (k + 1) * h] for k in range(4))
            torch.add(d_states[:, t], rec, out=dh)
            torch.mul(dh, z, out=dhz)
            dn = self.act.backward(torch.sub(dh, dhz, out=tmp), n, g[..., 2 * h :])
            torch.sub(states[:, t], n, out=tmp).mul_(dh)
            sigmoid_backward(tmp, z, g[..., h : 2 * h])
            sigmoid_backward(torch.mul(dn, hn, out=tmp), r, g[..., :h])
            torch.mul(dn, r, out=d_hn[:, t])
            torch.baddbmm(dhz, g[..., : 2 * h], w_rz, out=rec).baddbmm_(d_hn[:, t], w_n)
        d_w_rz, d_b_rz = _recurrent_grads(grad[..., : 2 * h], states)
        d_w_n, d_b_n = _recurrent_grads(d_hn, states)
        return grad, rec, torch.cat([d_w_rz, d_w_n], dim=1), torch.cat([d_b_rz, d_b_n], dim=1)


class LSTMKernel(Kernel):
    """``c' = σ(f) c + σ(i) g(.)``, ``h' = σ(o) g(c')``, state ``[h, c]``; blocks (i, f, g, o)."""

    def forward(self, drive: Tensor, states: Tensor, w_t: Tensor, bias: Tensor, ws: Workspace) -> tuple[Tensor, ...]:
        p, n_time, b, d = drive.shape
        h = d // 4
        gates = ws.get("gates", (p, n_time, b, 5 * h), drive)  # i, f, g, o, act(c')
        pre = ws.get("pre", (p, b, d), drive)
        bias = bias.unsqueeze(1)
        for t in range(n_time):
            torch.baddbmm(bias, states[:, t, :, :h], w_t, out=pre).add_(drive[:, t])
            gt, new = gates[:, t], states[:, t + 1]
            i, f, g, o, a = (gt[..., k * h : (k + 1) * h] for k in range(5))
            torch.sigmoid(pre[..., : 2 * h], out=gt[..., : 2 * h])
            g.copy_(self.act.fn_(pre[..., 2 * h : 3 * h]))
            torch.sigmoid(pre[..., 3 * h :], out=o)
            c_new = torch.mul(f, states[:, t, :, h:], out=new[..., h:]).addcmul_(i, g)
            self.act.fn_(a.copy_(c_new))
            torch.mul(o, a, out=new[..., :h])
        return (gates,)

    def backward(
        self, d_states: Tensor, states: Tensor, weight: Tensor, saved: tuple[Tensor, ...], ws: Workspace
    ) -> Grads:
        (gates,) = saved
        h = gates.shape[-1] // 5
        grad = ws.get("grad", (*gates.shape[:-1], 4 * h), gates)
        dh, dc, tmp = (ws.get(k, d_states[:, 0, :, :h].shape, gates) for k in ("dh", "dc", "tmp"))
        rec_h, rec_c = ws.get("rec_h", dh.shape, dh).zero_(), ws.get("rec_c", dh.shape, dh).zero_()
        for t in range(d_states.shape[1] - 1, -1, -1):
            gt, gr = gates[:, t], grad[:, t]
            i, f, g, o, a = (gt[..., k * h : (k + 1) * h] for k in range(5))
            torch.add(d_states[:, t, :, :h], rec_h, out=dh)
            self.act.backward(torch.mul(dh, o, out=tmp), a, dc)
            dc.add_(d_states[:, t, :, h:]).add_(rec_c)
            sigmoid_backward(torch.mul(dh, a, out=tmp), o, gr[..., 3 * h :])
            sigmoid_backward(torch.mul(dc, g, out=tmp), i, gr[..., :h])
            sigmoid_backward(torch.mul(dc, states[:, t, :, h:], out=tmp), f, gr[..., h : 2 * h])
            self.act.backward(torch.mul(dc, i, out=tmp), g, gr[..., 2 * h : 3 * h])
            torch.mul(dc, f, out=rec_c)
            torch.bmm(gr, weight, out=rec_h)
        return (grad, torch.cat([rec_h, rec_c], dim=-1), *_recurrent_grads(grad, states[..., :h]))


def _rows(t: Tensor) -> Tensor:
    """``[P, T, B, X] -> [P, T*B, X]`` (a view where the strides allow, as for slices of
    the time-major buffers)."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def _recurrent_grads(grad: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of ``W h + b`` from ``grad [P, T, B, D]`` and ``states [P, T+1, B, H]``
    (slot t holds the state step t reads): ``(dW [P, D, H], db [P, D])``, ``dW`` one GEMM
    per member over all T*B rows."""
    g = _rows(grad)
    return torch.bmm(_rows(states[:, :-1]).transpose(1, 2), g).transpose(1, 2), g.sum(1)


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, kernel: Kernel, ws: Workspace, x: Tensor, state0: Tensor,
        weight_ih: Tensor, bias_ih: Tensor, weight_hh: Tensor, bias_hh: Tensor,
    ) -> Tensor:
        p, n_time, b, n_in = x.shape
        d = bias_ih.shape[-1]
        drive = ws.get("drive", (p, n_time, b, d), weight_ih)
        torch.baddbmm(bias_ih.unsqueeze(1), _rows(x), weight_ih.transpose(1, 2), out=_rows(drive))
        states = ws.get("states", (p, n_time + 1, b, state0.shape[-1]), weight_ih)
        states[:, 0] = state0
        saved = kernel.forward(drive, states, weight_hh.transpose(1, 2), bias_hh, ws)
        ctx.kernel, ctx.ws = kernel, ws
        ctx.save_for_backward(x, states, weight_ih, weight_hh, *saved)
        return states[:, 1:]

    @staticmethod
    def backward(ctx: Any, d_states: Tensor) -> tuple[Tensor | None, ...]:
        x, states, weight_ih, weight_hh, *saved = ctx.saved_tensors
        d_drive, d_state0, d_weight_hh, d_bias_hh = ctx.kernel.backward(
            d_states, states, weight_hh, tuple(saved), ctx.ws
        )
        g = _rows(d_drive)
        needs = ctx.needs_input_grad
        return (
            None,
            None,
            torch.bmm(g, weight_ih).view(x.shape) if needs[2] else None,
            d_state0 if needs[3] else None,
            torch.bmm(_rows(x).transpose(1, 2), g).transpose(1, 2) if needs[4] else None,
            g.sum(1) if needs[5] else None,
            d_weight_hh if needs[6] else None,
            d_bias_hh if needs[7] else None,
        )


class Workspace:
    """Buffers reused by successive :func:`scan` calls of the same shapes.

    Fresh multi-megabyte buffers cost page faults on every step (docs/performance.md,
    "Training"). A workspace
    serves one forward/backward at a time: the states it returns are overwritten by the
    next call (autograd's version counters catch a backward run after that)."""

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
