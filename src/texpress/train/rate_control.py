"""HiFiC's target-rate control: a large rate weight above the target bpp, a small one below it.

    lambda = lambda_a  if r > target_bpp
             lambda_b  otherwise            (lambda_a >> lambda_b)

so the model is pushed hard down to the target rate and is then almost free to spend the rate
budget on distortion. r is the batch rate (averaged over all DDP ranks by the caller, so every rank
uses the same lambda), optionally smoothed by an exponential moving average (`ema` > 0) for small
batches. The state is a few numbers and goes into every training checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class RateController:
    target_bpp: float
    lambda_a: float
    lambda_b: float
    ema: float = 0.0
    smoothed_bpp: float | None = None
    steps_above: int = 0
    steps_below: int = 0
    last_lambda: float | None = None

    def update(self, bpp: float) -> float:
        """Feed the rate of this step, get the lambda to weight it with."""
        bpp = float(bpp)
        if self.smoothed_bpp is None or self.ema == 0.0:
            self.smoothed_bpp = bpp
        else:
            self.smoothed_bpp = self.ema * self.smoothed_bpp + (1.0 - self.ema) * bpp
        if self.smoothed_bpp > self.target_bpp:
            self.steps_above += 1
            self.last_lambda = self.lambda_a
        else:
            self.steps_below += 1
            self.last_lambda = self.lambda_b
        return self.last_lambda

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("smoothed_bpp", "steps_above", "steps_below", "last_lambda")}

    def load_state_dict(self, state: dict) -> None:
        self.smoothed_bpp = state.get("smoothed_bpp")
        self.steps_above = int(state.get("steps_above", 0))
        self.steps_below = int(state.get("steps_below", 0))
        self.last_lambda = state.get("last_lambda")
