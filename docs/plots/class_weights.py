"""A two-class linear model fitted with and without class weights on imbalanced data.

Plain gradient descent on fastxent's fused loss and gradient; the weighted fit uses
``weight = N / (2 * count per class)`` (scikit-learn's "balanced").
"""
import matplotlib.pyplot as plt
import numpy as np

import fastxent as fx

rng = np.random.default_rng(3)
common = rng.normal([0.0, 0.0], 1.0, size=(950, 2))
rare = rng.normal([2.0, 2.0], 0.8, size=(50, 2))
X = np.vstack([common, rare])
y = np.r_[np.zeros(950, np.int64), np.ones(50, np.int64)]
features = np.c_[X, np.ones(len(X))]            # a bias column


def fit(weight):
    W = np.zeros((3, 2))
    for _ in range(3000):
        _, dlogits = fx.cross_entropy(features @ W, y, weight=weight, return_grad=True)
        W -= 2.0 * features.T @ dlogits
    return W


balanced = len(y) / (2 * np.bincount(y))
fig, ax = plt.subplots(figsize=(5.4, 4.4))
ax.scatter(*common.T, s=6, color="tab:blue", alpha=0.5, label="class 0 (950 samples)")
ax.scatter(*rare.T, s=10, color="tab:orange", label="class 1 (50 samples)")
u = np.linspace(-3.5, 4.5, 2)
for weight, style, name in ((None, "--", "unweighted"), (balanced, "-", "weight = balanced")):
    W = fit(weight)
    d = W[:, 1] - W[:, 0]                      # boundary: d0 u + d1 v + d2 = 0
    ax.plot(u, -(d[0] * u + d[2]) / d[1], style, color="k", label=name)
    recall = ((features @ W).argmax(axis=1)[y == 1] == 1).mean()
    print(f"{name}: recall of class 1 = {recall:.2f}")
ax.set(xlim=(-3.5, 4.5), ylim=(-3.5, 4.5), xlabel="feature 1", ylabel="feature 2",
       title="decision boundary of cross_entropy(..., weight=w)")
ax.legend(fontsize=8, loc="lower left")
