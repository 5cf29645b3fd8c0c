"""fastxent: fast, exact cross-entropy losses and their gradients for NumPy.

The functions follow ``torch.nn.functional`` option by option; every loss can return its
gradient from the same pass (``return_grad=True``).
"""
from ._cpu import cpu_kernels, openmp_enabled
from ._threads import get_num_threads, set_num_threads
from .functional import (binary_cross_entropy, binary_cross_entropy_with_logits,
                         check_errors, cross_entropy, kl_div, log_softmax, logsumexp, nll_loss,
                         softmax)
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, NLLLoss

__version__ = "0.1.0"

__all__ = [
    "logsumexp", "softmax", "log_softmax", "cross_entropy", "nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
    "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss",
    "set_num_threads", "get_num_threads", "openmp_enabled", "cpu_kernels", "check_errors",
]
