"""Binary cross entropy against the predicted probability, and against the logit."""
import matplotlib.pyplot as plt
import numpy as np

import fastxent as fx

p = np.linspace(0.001, 0.999, 999)
ones, zeros = np.ones_like(p), np.zeros_like(p)
x = np.linspace(-8, 8, 801)

fig, (left, right) = plt.subplots(1, 2, figsize=(7.6, 3.4))
left.plot(p, fx.binary_cross_entropy(p, ones, reduction="none"), label="y = 1:  −log p")
left.plot(p, fx.binary_cross_entropy(p, zeros, reduction="none"), label="y = 0:  −log(1 − p)")
left.set(xlabel="predicted probability p of the positive class", ylabel="loss",
         title="binary_cross_entropy(p, y)", ylim=(0, 7))
left.legend()

for y in (1.0, 0.0):
    _, grad = fx.binary_cross_entropy_with_logits(x, np.full_like(x, y), reduction="sum",
                                                     return_grad=True)
    per_element = fx.binary_cross_entropy_with_logits(x, np.full_like(x, y), reduction="none")
    line, = right.plot(x, per_element, label=f"y = {y:g}: loss")
    right.plot(x, grad, ":", color=line.get_color(), label=f"y = {y:g}: gradient σ(x) − y")
right.axhline(0, color="0.7", lw=0.8)
right.set(xlabel="logit x", title="binary_cross_entropy_with_logits(x, y)", ylim=(-1.2, 8))
right.legend(fontsize=8)
