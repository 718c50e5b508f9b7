"""Label-free indicators of whether splitting the selected classes can pay off (issue 25): computed from
phase 1 and the partition alone, with the class labels but never the fine labels.

* ``separation_gap``: how much more the partition explains of a class's spread than the same partitioner
  explains of a one-mode reference with the class's mean and covariance (a gap statistic, Tibshirani,
  Walther & Hastie 2001, with a Gaussian reference): ≈ 0 for one elongated mode, > 0 for distinct modes.
* ``split_stability``: the adjusted Rand index between the splits of two random subsamples, on the
  observations they share (a label-free stand-in for the NMI against fine labels). k-means splits one
  elongated mode stably too, so stability alone does not tell modes apart; it flags splits that are noise.
* ``ridge_probe``: the payoff itself, on the frozen phase-1 features: cross-fitted ridge heads with class
  targets (eq. 3's one unit per class), subclass targets (a class scores the max of its units, SPEC §5)
  and the reweight control (the selected classes' positives weighted by H), scored at class level on
  the held-out folds; the paired per-observation differences give Δ and its standard error.

Wide vectors are reduced first, so the cost grows with the width as a run's does (linearly), not as its square or
cube: a class's vectors to their top ``CLASS_WIDTH`` principal coordinates for gap and stability (k-means' costs
there are within 1 + ε of the full space's, Cohen et al., STOC 2015), the probe's features by a seeded Gaussian
sketch to ``PROBE_WIDTH`` columns (Johnson–Lindenstrauss).

Pure numpy / torch / scikit-learn: no Lightning, no configuration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from sdnn.subclass import class_scores

__all__ = ["Resplit", "ResplitAround", "principal_coordinates", "gaussian_references", "separation_gap",
           "split_stability", "ClassIndicators", "class_indicators", "ProbeResult", "ridge_probe", "probe_targets"]

# (vectors, seed) -> subclass numbers 0..H-1: the run's partitioner applied again (for references, subsamples)
Resplit = Callable[[np.ndarray, int], np.ndarray]
# (vectors, seed, mean) -> subclass numbers: the run's partitioner, ``mean`` (of all training data) in the same
# coordinates as ``vectors``; None where the caller has no mean (the vectors' own)
ResplitAround = Callable[[np.ndarray, int, "np.ndarray | None"], np.ndarray]
REFERENCES = 3      # one-mode references per class for the gap
CLASS_WIDTH = 64    # gap and stability in a class's top principal coordinates beyond this many features
PROBE_WIDTH = 512   # the probe's heads on a Gaussian sketch of the features beyond this many


def _within(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Σ over subclasses of the squared distances to their means (W_H of the gap statistic)."""
    total = 0.0
    for label in np.unique(labels):
        part = vectors[labels == label]
        total += float(((part - part.mean(0)) ** 2).sum())
    return total


def _explained_log(vectors: np.ndarray, labels: np.ndarray) -> float:
    """log(W_H / W_1): the log share of the spread the split leaves within its subclasses (≤ 0)."""
    whole = _within(vectors, np.zeros(len(vectors), dtype=np.int64))
    return float(np.log(max(_within(vectors, labels), 1e-300) / max(whole, 1e-300)))


def _principal_axes(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The singular values (ascending, ≥ 0) and right singular vectors (rows) of centred rows, from the
    eigendecomposition of the smaller Gram matrix (no SVD of the data)."""
    n, d = centred.shape
    if n >= d:
        values, axes = np.linalg.eigh(centred.T @ centred)               # (d,), (d, d)
        return np.sqrt(np.clip(values, 0, None)), axes.T
    values, left = np.linalg.eigh(centred @ centred.T)                   # (n,), (n, n)
    scale = np.sqrt(np.clip(values, 0, None))
    return scale, (left.T @ centred) / np.maximum(scale, 1e-12)[:, None]


def principal_coordinates(vectors: np.ndarray, width: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The rows' coordinates on their top ``width`` principal axes (about their mean; only axes with spread, so at
    most n − 1 of them), and the map taking any point (e.g. the training data's mean) into the same coordinates;
    above ``width`` features only, else the vectors as they are and the identity."""
    if vectors.shape[1] <= width:
        return vectors, (lambda point: point)
    centre = vectors.mean(0)
    centred = vectors - centre
    scale, axes = _principal_axes(centred)
    scale, axes = scale[::-1][:width], axes[::-1][:width]              # the largest first
    spread = scale > max(scale[0], 0.0) * 1e-5                          # (relative variance 1e-10)
    spread[0] = True                                                    # identical rows: one axis, all at 0
    basis = axes[spread].T                                              # (d, ≤ width)
    return centred @ basis, (lambda point: (np.asarray(point, dtype=np.float64).reshape(-1) - centre) @ basis)


def gaussian_references(vectors: np.ndarray, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """``count`` draws, each of as many rows as ``vectors``, from a Gaussian with their mean and sample covariance
    (one mode): z Λ^½ Vᵀ / √(n−1) + mean, on the principal axes (``_principal_axes``)."""
    mean = vectors.mean(0)
    scale, basis = _principal_axes(vectors - mean)
    scale = scale / np.sqrt(max(len(vectors) - 1, 1))
    return [mean + (rng.standard_normal((len(vectors), len(scale))) * scale) @ basis for _ in range(count)]


def separation_gap(vectors: np.ndarray, subclasses: np.ndarray, resplit: Resplit,
                   references: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(gap, z)``: mean over one-mode ``references`` (``gaussian_references``) of log(W_H/W_1)(reference, split
    anew) − log(W_H/W_1)(data), and the gap in units of the references' standard deviation (floored, so a tie is
    not infinite)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    data = _explained_log(vectors, np.asarray(subclasses))
    ref = [_explained_log(reference, np.asarray(resplit(reference, r + 1))) for r, reference in enumerate(references)]
    gap = float(np.mean(ref) - data)
    spread = max(float(np.std(ref, ddof=1)) if len(ref) > 1 else 0.0, 0.01 * abs(float(np.mean(ref))), 1e-6)
    return gap, gap / spread


def split_stability(vectors: np.ndarray, resplit: Resplit, rng: np.random.Generator, pairs: int = 3,
                    fraction: float = 0.8) -> float:
    """Mean adjusted Rand index between the splits of two random ``fraction``-subsamples, on their overlap."""
    from sklearn.metrics import adjusted_rand_score

    n = len(vectors)
    size = max(2, int(round(fraction * n)))
    scores = []
    for p in range(pairs):
        first, second = rng.choice(n, size, replace=False), rng.choice(n, size, replace=False)
        a, b = np.full(n, -1), np.full(n, -1)
        a[first] = resplit(vectors[first], 100 + 2 * p)
        b[second] = resplit(vectors[second], 101 + 2 * p)
        shared = (a >= 0) & (b >= 0)
        scores.append(adjusted_rand_score(a[shared], b[shared]))
    return float(np.mean(scores))


@dataclass
class ClassIndicators:
    """The indicators of one split class (``to_json`` is its entry in results.json ``split_indicators``)."""

    n: int              # observations used (a seeded subsample of the class above ``max_rows``)
    gap: float          # separation_gap
    gap_z: float
    stability: float    # split_stability (ARI)

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def class_indicators(vectors: np.ndarray, subclasses: np.ndarray, resplit_around: ResplitAround, seed: int,
                     mean: np.ndarray | None = None, max_rows: int = 1000, width: int = CLASS_WIDTH) -> ClassIndicators:
    """Gap and stability of one class's split: its vectors in the partition's space, its subclass numbers, the
    run's partitioner and the training data's ``mean`` in that space; in the class's top ``width`` principal
    coordinates where the space is wider (``principal_coordinates``)."""
    rng = np.random.default_rng(seed)
    vectors = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    subclasses = np.asarray(subclasses)
    if len(vectors) > max_rows:  # bounded cost: the class's shape is clear from a few thousand observations
        keep = np.sort(rng.choice(len(vectors), max_rows, replace=False))
        vectors, subclasses = vectors[keep], subclasses[keep]
    with threadpool_limits(1):  # a few thousand rows: one BLAS/OpenMP thread beats a contended pool many times over
        vectors, to_coordinates = principal_coordinates(vectors, width)
        centre = None if mean is None else to_coordinates(mean)

        def resplit(part: np.ndarray, split_seed: int) -> np.ndarray:
            return resplit_around(part, split_seed, centre)

        gap, z = separation_gap(vectors, subclasses, resplit, gaussian_references(vectors, rng, REFERENCES))
        stability = split_stability(vectors, resplit, rng)
    return ClassIndicators(n=len(vectors), gap=gap, gap_z=z, stability=stability)


# ----------------------------------------------------------------------------------------------- the probe

@dataclass
class ProbeResult:
    """Cross-fitted class-level accuracy of ridge heads on frozen features, in percentage points: ``plain``
    (one unit per class); ``delta`` (subclass head − plain) and ``reweight`` (reweighted − plain), each with
    its standard error over the ``n`` held-out observations (paired). Multilabel: hit@1 instead of accuracy.
    ``width``: the features the heads saw, of ``features`` (fewer: a Gaussian sketch, ``PROBE_WIDTH``)."""

    plain: float
    delta: float
    delta_se: float
    reweight: float | None
    reweight_se: float | None
    n: int
    folds: int
    width: int
    features: int

    def to_json(self) -> dict[str, float | int | None]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def seen(self) -> str:
        """What the heads were fitted on, in words."""
        if self.width < self.features:
            return f"a {self.width}-column Gaussian sketch of the {self.features:,} phase-1 features"
        return "the phase-1 features"


def probe_targets(labels: Tensor, subclass_units: Tensor, num_classes: int, units: int) -> tuple[Tensor, Tensor]:
    """Class and unit indicator matrices ``(n, c)``, ``(n, S)`` for the probe. ``labels``: class indices (n,)
    or a multi-hot (n, c); ``subclass_units``: the output unit of each observation (n,), or a multi-hot over
    the S units (multilabel: each positive selected class contributes its assigned subclass, SPEC §4)."""
    if labels.ndim == 1:
        classes = torch.nn.functional.one_hot(labels.long(), num_classes).double()
    else:
        classes = labels.double()
    if subclass_units.ndim == 1:
        unit = torch.nn.functional.one_hot(subclass_units.long(), units).double()
    else:
        unit = subclass_units.double()
    return classes, unit


def _standardised(features: Tensor, width: int, seed: int) -> Tensor:
    """z-scored columns, through a seeded Gaussian sketch to ``width`` columns where there are more, and a constant
    column (the bias), float32: the ridge penalty then means the same for every feature scale, and λ keeps the
    system well conditioned."""
    x = features.float().reshape(len(features), -1)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    if x.shape[1] > width:  # n·d·width instead of the n·d² Gram and the d³ factorisations
        sketch = torch.randn(x.shape[1], width, generator=torch.Generator().manual_seed(seed)) / np.sqrt(width)
        x = x @ sketch
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


@contextlib.contextmanager
def one_thread():
    """torch on one thread meanwhile: small systems, and a busy machine's thread pool costs more than it gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ridge_probe(features: Tensor, class_targets: Tensor, unit_targets: Tensor, subclass_to_class: Tensor,
                selected: Sequence[int], per_class: int, seed: int, folds: int = 5, ridge: float = 1e-2,
                reweight: bool = True, width: int = PROBE_WIDTH) -> ProbeResult:
    """Ridge heads W = (XᵀX + λI)⁻¹ XᵀY on ``features`` (n, f), fitted on all folds but one and scored on it:
    class targets (n, c), unit targets (n, S) (a class's score: the max of its units), and, with ``reweight``,
    the class head whose selected classes' positives carry weight H (eq. 3 reweighted; one solve per selected
    class). λ = ``ridge`` × the mean diagonal of XᵀX. A held-out observation counts as right when its top class
    is one of its classes (multiclass: accuracy; multilabel: hit@1). Features wider than ``width``: a seeded
    Gaussian sketch to ``width`` columns first."""
    with one_thread():
        return _ridge_probe(features, class_targets, unit_targets, subclass_to_class, selected, per_class, seed,
                            folds, ridge, reweight, width)


def _ridge_probe(features, class_targets, unit_targets, subclass_to_class, selected, per_class, seed, folds, ridge,
                 reweight, width) -> ProbeResult:
    x = _standardised(features, width, seed)
    n, d = x.shape
    yc, yu = class_targets.float(), unit_targets.float()
    c = yc.shape[1]
    fold = torch.as_tensor(np.random.default_rng(seed).permutation(n) % folds)
    grams = [x[fold == f].T @ x[fold == f] for f in range(folds)]  # one pass over the data for every fold
    gram = sum(grams)
    penalty = ridge * torch.trace(gram) / d * torch.eye(d, dtype=x.dtype)
    right = {name: torch.zeros(n) for name in ("plain", "units", "reweight")}
    s2c = torch.as_tensor(subclass_to_class)
    extra = float(per_class - 1)
    for f in range(folds):
        held, kept = fold == f, fold != f
        a = gram - grams[f] + penalty
        chol = torch.linalg.cholesky(a)
        xk = x[kept]
        w_class, w_unit = _solve(chol, xk.T @ yc[kept]), _solve(chol, xk.T @ yu[kept])
        xh, yh = x[held], yc[held]
        right["plain"][held] = _hits(xh @ w_class, yh)
        right["units"][held] = _hits(class_scores(xh @ w_unit, s2c, c), yh)
        if reweight:
            w_re = w_class.clone()
            for k in selected:  # weighted least squares for the k-th column: positives count H times
                pos = xk[yc[kept][:, k] > 0]
                w_re[:, k] = _weighted_column(a, chol, pos, extra, xk.T @ yc[kept][:, k] + extra * pos.sum(0))
            right["reweight"][held] = _hits(xh @ w_re, yh)
    units, re = (right[name].double() - right["plain"].double() for name in ("units", "reweight"))
    se = (lambda diff: 100 * float(diff.std(unbiased=True)) / np.sqrt(n))
    return ProbeResult(plain=100 * float(right["plain"].mean()), delta=100 * float(units.mean()), delta_se=se(units),
                       reweight=100 * float(re.mean()) if reweight else None, reweight_se=se(re) if reweight else None,
                       n=n, folds=folds, width=d - 1, features=int(np.prod(features.shape[1:])))


def _weighted_column(a: Tensor, chol: Tensor, pos: Tensor, extra: float, rhs: Tensor, steps: int = 100,
                     tolerance: float = 1e-6) -> Tensor:
    """w solving (A + extra · PᵀP) w = rhs by conjugate gradients preconditioned with A (its Cholesky factor): the
    preconditioned system's eigenvalues lie in [1, 1 + extra] (PᵀP ≤ A), so a few steps suffice and PᵀP (d × d)
    is never formed."""
    def apply(v: Tensor) -> Tensor:
        return a @ v + extra * (pos.T @ (pos @ v))

    def precondition(v: Tensor) -> Tensor:
        return _solve(chol, v[:, None])[:, 0]

    w = precondition(rhs)
    residual = rhs - apply(w)
    z = precondition(residual)
    direction, rz, scale = z, residual @ z, float(rhs.norm())
    for _ in range(steps):
        if float(residual.norm()) <= tolerance * scale:
            break
        q = apply(direction)
        alpha = rz / (direction @ q)
        w, residual = w + alpha * direction, residual - alpha * q
        z = precondition(residual)
        rz, previous = residual @ z, rz
        direction = z + (rz / previous) * direction
    return w


def _solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """A⁻¹ rhs from A's lower Cholesky factor: two triangular solves (for a few right-hand sides much faster
    than ``torch.cholesky_solve``, which copies the factor each call)."""
    return torch.linalg.solve_triangular(chol.T, torch.linalg.solve_triangular(chol, rhs, upper=False), upper=True)


def _hits(scores: Tensor, targets: Tensor) -> Tensor:
    """1.0 where the top-scoring class is one of the observation's classes."""
    return targets.gather(1, scores.argmax(1, keepdim=True)).squeeze(1).clamp_max(1)
