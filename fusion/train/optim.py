"""Optimisers as other frameworks define them, for training that matches the authors' code step for step."""

from __future__ import annotations

import torch


class TFRMSprop(torch.optim.Optimizer):
    """TensorFlow 1's ``tf.train.RMSPropOptimizer`` (``ApplyRMSProp``), which differs from ``torch.optim.RMSprop``:
    the mean square starts at one, not zero, the default decay is 0.9, and epsilon sits inside the square root::

        ms  = decay * ms + (1 - decay) * g^2        (ms = 1 before the first step)
        mom = momentum * mom + lr * g / sqrt(ms + epsilon)
        w   = w - mom

    Args:
        params: parameters or groups; lr: learning rate; decay, momentum, epsilon: TensorFlow's defaults.
    """

    def __init__(self, params, lr: float = 1e-3, decay: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-10):
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mom, g = state["ms"], state["mom"], p.grad
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                mom.mul_(group["momentum"]).add_(group["lr"] * g / torch.sqrt(ms + group["epsilon"]))
                p.sub_(mom)
        return loss
