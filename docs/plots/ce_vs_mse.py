"""Cross entropy and mean squared error on a softmax output, along the true class's logit.

Three classes, the true class is 0, the other logits are held at 0. The MSE gradient is the
softmax Jacobian applied to 2 (p - y); the cross-entropy gradient comes from fastxent.
"""
import matplotlib.pyplot as plt
import numpy as np

import fastxent as fx

z = np.linspace(-10, 10, 401)
logits = np.zeros((z.size, 3))
logits[:, 0] = z
target = np.zeros(z.size, dtype=np.int64)
onehot = np.eye(3)[target]

ce, ce_grad = fx.cross_entropy(logits, target, reduction="sum", return_grad=True)
ce_rows = fx.cross_entropy(logits, target, reduction="none")
p = fx.softmax(logits, axis=1)
mse = ((p - onehot) ** 2).sum(axis=1)
residual = 2 * (p - onehot)
# d mse / d x_j = sum_c residual_c p_c (delta_cj - p_j)
mse_grad = p * residual - p * (p * residual).sum(axis=1, keepdims=True)

fig, (left, right) = plt.subplots(1, 2, figsize=(7.6, 3.4))
left.plot(z, ce_rows, label="cross entropy  −log p₀")
left.plot(z, mse, label="squared error  Σ (p − y)²")
left.set(xlabel="logit of the true class (others at 0)", ylabel="loss", title="loss",
         ylim=(0, 6))
left.legend()

right.plot(z, ce_grad[:, 0], label="cross entropy:  p₀ − 1")
right.plot(z, mse_grad[:, 0], label="squared error")
right.axhline(0, color="0.7", lw=0.8)
right.axvspan(-10, -4, color="tab:red", alpha=0.08)
right.text(-9.6, -0.55, "confidently wrong:\nMSE gradient ≈ 0", fontsize=8)
right.set(xlabel="logit of the true class (others at 0)", ylabel="∂ loss / ∂ logit",
          title="gradient")
right.legend(fontsize=8, loc="lower right")
