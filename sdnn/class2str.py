"""The latent-hierarchy (LH) classifier of Class2Str (Saha, Varma & Jawahar, "Class2Str: End to End
Latent Hierarchy Learning", ICPR 2018, arXiv 1808.06675; TensorFlow code: github.com/Soham0/Class2Str).

The fully connected classifier is replaced by a network that emits a binary string of ``L`` bits:

* **LH classifier**: the penultimate features, repeated ``L`` times as an input sequence, through
  stacked LSTMs (100, 20, 100 units in the authors' CIFAR-10 script); a linear layer per step gives
  the two logits of bit ``l``, whose softmax is the predicted distribution ``p_l``.
* **Class2Str mapping** (the authors' ``Hash``): a class's one-hot ``y`` → ReLU(Linear(c → 500)) →
  one Linear(500 → 2) per bit → softmax: the class's *soft code* ``z_{y,l}``. Its arg-max bits are
  the class's string, a path from the root to a leaf of a latent binary tree (:meth:`codes`).
* **Str2Class mapping** (``InvHash``): the concatenated ``z_y`` → ReLU(Linear(2L → 500)) →
  Linear(500 → c). Its cross-entropy, the *inverse-hash* loss, keeps the mapping one-to-one.

The loss (:class:`Class2StrLoss`) is ``w_c · Σ_l CE(p_l, z_{y,l}) + w_i · CE(Str2Class(z_y), y) −
w_l2 · Σ_l ½‖z_{y,l}‖²``; the last term pushes each soft bit towards 0 or 1. The classifier's
scores (:meth:`LatentHierarchyClassifier.forward`) are ``s_c = Σ_l Σ_b code_{c,l,b} · log p_{l,b}``,
the log-likelihood of class c's code under the predicted bits: with the soft codes in training
``−s_y`` is the ``w_c`` term, and with the hard (arg-max) codes in evaluation ``argmax_c s_c`` is the
maximum-likelihood class, defined even when the predicted string is no class's code.

Departures from the authors' code, and why (docs/class2str.md has the evidence):

1. **The whole network is fine-tuned in stage 2.** The TensorFlow scripts put the CNN features under
   ``tf.stop_gradient``; the README and the paper fine-tune the LH classifier with the rest of the
   network, which we follow (``method=class2str`` trains every parameter).
2. **Stage 1 is SDNN's phase 1** (sigmoid cross-entropy, eq. 3 of Gkalelis & Mezaris), not a softmax
   FC classifier, so that the phase-1 cache is shared with SDNN runs of the same key and both
   methods start from the same network; stage 2 discards the FC head either way.
3. **Gradients of the classification term reach the Class2Str mapping** (``end_to_end=True``, the
   paper's end-to-end learned mapping). In the TF1 scripts ``softmax_cross_entropy_with_logits``
   has no gradient for its labels, so the codes are shaped only by the inverse-hash and L2 terms and
   cannot depend on the images; ``end_to_end=False`` reproduces that.
4. **The L2 term is averaged over the batch** (``tf.nn.l2_loss`` sums it), like the other two terms,
   so ``w_l2`` does not depend on the batch size. We keep the README's number, ``w_l2 = 0.1``, which
   is 1/200 of the authors' weight at their batch of 200: their weight (``w_l2 = 20`` here) saturated
   the soft codes before the inverse-hash term had separated them, and classes collided on digits.
5. **Adam at 1e-3 for stage 2** (``class2str.optimizer=adam``, ``class2str.lr``): the scripts use Adam
   at 1e-4 for up to 1000 epochs; in the 30 epochs of our digits schedule 1e-4 had not converged, and
   the run's SGD (lr 0.05, Nesterov momentum) put every class on one code, with the authors' weights
   and with all three weights 1. ``class2str.optimizer=run`` uses the run's ``optim`` group.
6. **Maximum-likelihood decoding.** The scripts score a sample as right when every predicted bit
   matches the class's code (``match_all``), which leaves strings that match no code undecided; we
   predict the class whose code is most likely under ``p``.
7. **PyTorch's LSTM and initialisation.** ``nn.LSTM`` has two bias vectors per layer (TF's
   ``LSTMCell`` one) and PyTorch's default initialisation replaces the truncated normal (σ = 0.1)
   and constant 0.1 biases of ``lib.py``; stage 2 has no weight decay (the scripts' stage-2 loss
   adds none).
8. The CIFAR scripts call ``weighted_sum_cross_entropy``, which ``lib.py`` does not define; we read
   it as ``sum_cross_entropy`` (the sum over bits, averaged over the batch), which the MNIST script
   uses. (The MNIST script also adds ``+0.01 · l2``, the opposite sign; we follow the CIFAR scripts.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdnn.config import Class2StrConfig, shortest_code_length

__all__ = ["Class2StrLoss", "LatentHierarchyClassifier", "collisions", "fc_head_parameters", "from_settings",
           "hierarchy_summary"]


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if not values or min(values) < 1:
        raise ValueError(f"{name}={list(values)} must be a non-empty list of integers >= 1 (LSTM sizes)")
    return values


class LatentHierarchyClassifier(nn.Module):
    """The LH classifier head with its Class2Str and Str2Class mappings (module docstring).

    ``forward(features)`` (n, in_features) → class scores (n, c): the log-likelihood of each class's
    code under the predicted bits, with the soft codes while training and the hard codes in eval.
    """

    def __init__(self, in_features: int, num_classes: int, code_length: int | None = None,
                 rnn_hidden: Sequence[int] = (100, 20, 100), mapping_hidden: int = 500, end_to_end: bool = True):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must be >= 2")
        shortest = shortest_code_length(num_classes)
        length = shortest if code_length is None else int(code_length)
        if length < shortest:
            raise ValueError(f"code_length={length} is too short for {num_classes} classes ({2 ** length} strings); "
                             f"use >= {shortest} (null = ⌈log2 c⌉)")
        if mapping_hidden < 1:
            raise ValueError(f"mapping_hidden={mapping_hidden} must be an integer >= 1")
        sizes = _positive_ints("rnn_hidden", rnn_hidden)
        self.in_features, self.num_classes, self.code_length = in_features, num_classes, length
        self.end_to_end = end_to_end
        # how to build it again (sdnn.artifact keeps it in a run's model/)
        self.arguments = {"in_features": in_features, "num_classes": num_classes, "code_length": length,
                          "rnn_hidden": list(sizes), "mapping_hidden": mapping_hidden, "end_to_end": end_to_end}
        self.rnn = nn.ModuleList(nn.LSTM(n_in, n_out, batch_first=True)
                                 for n_in, n_out in zip((in_features, *sizes[:-1]), sizes))
        # One Linear(H → 2) per step, stored as (L, 2, H) and (L, 2)
        bound = 1 / math.sqrt(sizes[-1])
        self.bit_weight = nn.Parameter(torch.empty(length, 2, sizes[-1]).uniform_(-bound, bound))
        self.bit_bias = nn.Parameter(torch.empty(length, 2).uniform_(-bound, bound))
        # Class2Str: one-hot → hidden → one Linear(hidden → 2) per bit (as one Linear(hidden → 2L))
        self.class2str = nn.Sequential(nn.Linear(num_classes, mapping_hidden), nn.ReLU(),
                                       nn.Linear(mapping_hidden, 2 * length))
        # Str2Class: the concatenated soft code → hidden → class logits
        self.str2class = nn.Sequential(nn.Linear(2 * length, mapping_hidden), nn.ReLU(),
                                       nn.Linear(mapping_hidden, num_classes))

    # ------------------------------------------------------------------ the classifier

    def bit_logits(self, features: Tensor) -> Tensor:
        """(n, L, 2): the two logits of every bit, from the features repeated L times through the LSTMs."""
        sequence = features.unsqueeze(1).expand(-1, self.code_length, -1)
        for lstm in self.rnn:
            sequence, _ = lstm(sequence)
        return torch.einsum("nlh,lbh->nlb", sequence, self.bit_weight) + self.bit_bias

    def forward(self, features: Tensor) -> Tensor:
        codes = self.soft_codes() if self.training else self.hard_codes()
        if self.training and not self.end_to_end:
            codes = codes.detach()
        return code_log_likelihood(F.log_softmax(self.bit_logits(features), dim=-1), codes)

    # ------------------------------------------------------------------ the mappings

    def soft_codes(self) -> Tensor:
        """(c, L, 2): z, every class's soft code (Class2Str of its one-hot vector)."""
        eye = torch.eye(self.num_classes, device=self.bit_bias.device, dtype=self.bit_bias.dtype)
        return self.class2str(eye).view(self.num_classes, self.code_length, 2).softmax(-1)

    def hard_codes(self) -> Tensor:
        """(c, L, 2): the arg-max bit of every soft code, one-hot."""
        return F.one_hot(self.soft_codes().argmax(-1), 2).to(self.bit_bias.dtype)

    def inverse_logits(self, codes: Tensor) -> Tensor:
        """(n, c): Str2Class of soft codes (n, L, 2)."""
        return self.str2class(codes.flatten(1))

    @torch.no_grad()
    def codes(self) -> list[str]:
        """Every class's string of '0'/'1' (its arg-max bits): its path in the latent tree."""
        bits = self.soft_codes().argmax(-1).cpu()
        return ["".join(str(int(b)) for b in row) for row in bits]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the classifier at inference (LSTMs + bit layers; the codes are a c × L bit
        table) and with the two mappings that train it."""
        inference = sum(p.numel() for p in self.rnn.parameters()) + self.bit_weight.numel() + self.bit_bias.numel()
        return {"inference": inference, "with_mappings": sum(p.numel() for p in self.parameters())}


def code_log_likelihood(bit_log_probs: Tensor, codes: Tensor) -> Tensor:
    """(n, c): ``s_c = Σ_l Σ_b codes[c, l, b] · log p[n, l, b]`` — with one-hot codes, the
    log-likelihood of class c's string; with soft codes, minus the summed bit cross-entropies."""
    return torch.einsum("nlb,clb->nc", bit_log_probs, codes)


def fc_head_parameters(in_features: int, num_classes: int) -> int:
    """The fully connected classifier the LH classifier replaces: f·c weights + c biases."""
    return in_features * num_classes + num_classes


def collisions(codes: Sequence[str]) -> list[list[int]]:
    """Groups of classes that share a string (empty when the mapping is one-to-one)."""
    by_code: dict[str, list[int]] = {}
    for cls, code in enumerate(codes):
        by_code.setdefault(code, []).append(cls)
    return [group for group in by_code.values() if len(group) > 1]


class Class2StrLoss(nn.Module):
    """``w_c · Σ_l CE(p_l, z_{y,l}) + w_i · CE(Str2Class(z_y), y) − w_l2 · Σ_l ½‖z_{y,l}‖²``, each
    averaged over the batch (module docstring, departure 4).

    Called as ``loss(scores, targets, head)``: ``scores`` is the head's training output, so the
    first term is ``−mean(s_y)``; the other two read the head's mappings (``uses_head``).
    """

    uses_head = True
    multilabel = False

    def __init__(self, w_c: float = 4.0, w_i: float = 100.0, w_l2: float = 0.1):
        super().__init__()
        for name, value in (("w_c", w_c), ("w_i", w_i), ("w_l2", w_l2)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be a finite number >= 0 (a weight of the Class2Str loss)")
        self.w_c, self.w_i, self.w_l2 = float(w_c), float(w_i), float(w_l2)

    def terms(self, scores: Tensor, targets: Tensor, head: LatentHierarchyClassifier) -> dict[str, Tensor]:
        """The three unweighted terms: ``classification``, ``inverse_hash`` and ``binarising`` (≤ 0)."""
        targets = targets.long()
        codes = head.soft_codes()[targets]                                     # z_y: (n, L, 2)
        return {"classification": -scores.gather(1, targets[:, None]).mean(),
                "inverse_hash": F.cross_entropy(head.inverse_logits(codes), targets),
                "binarising": -0.5 * codes.pow(2).sum((1, 2)).mean()}

    def forward(self, scores: Tensor, targets: Tensor, head: LatentHierarchyClassifier) -> Tensor:
        terms = self.terms(scores, targets, head)
        return self.w_c * terms["classification"] + self.w_i * terms["inverse_hash"] + self.w_l2 * terms["binarising"]


def from_settings(settings: Class2StrConfig, num_classes: int
                  ) -> tuple[Callable[[int, int], LatentHierarchyClassifier], Class2StrLoss, Callable | None]:
    """The ``class2str`` group's head factory ((in_features, num_classes) → head), its loss, and stage 2's
    optimiser factory (parameters → Adam; None: the run's ``optim`` group)."""
    head = partial(LatentHierarchyClassifier, code_length=settings.code_length_for(num_classes),
                   rnn_hidden=tuple(settings.rnn_hidden), mapping_hidden=settings.mapping_hidden,
                   end_to_end=settings.end_to_end)
    optimizer = partial(torch.optim.Adam, lr=settings.lr) if settings.optimizer == "adam" else None
    return head, Class2StrLoss(settings.w_c, settings.w_i, settings.w_l2), optimizer


def hierarchy_summary(head: LatentHierarchyClassifier, class_names: Sequence[str]) -> dict:
    """results.json's ``hierarchy``: every class's code, whether they are distinct (and if not, the
    classes that share one, by name), the least certain soft bit (max(z) over its two values, least
    over classes and bits: 1 = every code binary, 0.5 = undecided) and the classifier's parameters
    beside the FC head's."""
    codes = head.codes()
    shared = collisions(codes)
    with torch.no_grad():
        confidence = float(head.soft_codes().max(-1).values.min())
    return {"codes": codes, "distinct": not shared, "collisions": [[class_names[i] for i in group] for group in shared],
            "code_length": head.code_length, "least_certain_bit": confidence,
            "classifier_parameters": head.parameter_counts(),
            "fc_head_parameters": fc_head_parameters(head.in_features, head.num_classes)}
