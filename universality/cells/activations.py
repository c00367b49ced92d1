"""The activation registry: each nonlinearity with its derivative.

The derivative is written as a function of the activation's *output*
(``f'(x) = derivative(f(x))``): the fused backward through time and the closed-form
Jacobians store outputs only. ReLU's derivative at 0 is 0, as autograd defines it.
A new entry needs all four functions; nothing falls back to another activation's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity and its derivative, both ways the code needs them.

    * ``fn(x)``, ``fn_(x)`` in place, and ``fn_out(x, out)`` into a buffer;
    * ``derivative(y) = fn'(x)`` where ``y = fn(x)``;
    * ``backward(grad, y, out)``: ``out = grad * fn'(x)`` without allocating (the fused
      backward through time), using torch's own backward kernels.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    fn_: Callable[[Tensor], Tensor]
    fn_out: Callable[[Tensor, Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]
    backward: Callable[[Tensor, Tensor, Tensor], Tensor]


def _tanh_out(x: Tensor, out: Tensor) -> Tensor:
    return torch.tanh(x, out=out)


def _relu_out(x: Tensor, out: Tensor) -> Tensor:
    return torch.clamp_min(x, 0, out=out)


def _tanh_derivative(y: Tensor) -> Tensor:
    return 1 - y * y


def _tanh_backward(grad: Tensor, y: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.tanh_backward.grad_input(grad, y, grad_input=out)


def _relu_derivative(y: Tensor) -> Tensor:
    return (y > 0).to(y.dtype)


def _relu_backward(grad: Tensor, y: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward.grad_input(grad, y, 0, grad_input=out)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("tanh", torch.tanh, torch.tanh_, _tanh_out, _tanh_derivative, _tanh_backward),
        Activation("relu", torch.relu, torch.relu_, _relu_out, _relu_derivative, _relu_backward),
    )
}


def sigmoid_backward(grad: Tensor, s: Tensor, out: Tensor) -> Tensor:
    """``out = grad * s (1 - s)`` where ``s = sigmoid(x)`` (no allocation)."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, s, grad_input=out)


def get_activation(name: str) -> Activation:
    """The registered activation called ``name``; a clear error for unknown names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None
