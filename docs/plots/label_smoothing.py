"""Label smoothing gives the loss a finite minimum in the true class's margin."""
import matplotlib.pyplot as plt
import numpy as np

import fastxent as fx

margin = np.linspace(-4, 12, 321)
logits = np.zeros((margin.size, 10))
logits[:, 0] = margin
target = np.zeros(margin.size, dtype=np.int64)

fig, ax = plt.subplots(figsize=(5.4, 3.6))
for eps in (0.0, 0.05, 0.1, 0.2):
    loss = fx.cross_entropy(logits, target, label_smoothing=eps, reduction="none")
    line, = ax.plot(margin, loss, label=f"label_smoothing = {eps:g}")
    best = loss.argmin()
    if eps > 0:
        ax.plot(margin[best], loss[best], "o", color=line.get_color())
ax.set(xlabel="margin of the true class's logit over the 9 others", ylabel="loss",
       title="cross_entropy, 10 classes", ylim=(0, 4))
ax.legend(fontsize=8)
