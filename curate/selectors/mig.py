"""MIG: select the samples that add the most information over a graph of semantic labels.

Chen et al., 2025, reference code yichengchen24/MIG (`mig/label.py`, `mig/sampler.py`, `mig/data.py`).
Line by line, as the reference does it:

- nodes: the sorted set of the pool's labels (only labels in `label_vocab`, if given: the
  reference's valid-tag filter); W: cosine similarity of the raw label strings' embeddings, entries
  below `sim_threshold` set to 0, self-loops kept (curate.labels.graph);
- P = diag(W) + prop_weight * offdiag(W), each column divided by its sum;
- V[i, j] = s_i for each label j of sample i (s_i the `quality_score`, 1 when none is named), or
  s_i / |labels_i| with `norm`; M = V P;
- phi(x) = (x + a)^b (`pow`) or 1 - exp(-alpha x) (`exp`); F(S) = sum_j phi(x_j), x = sum_{i in S} M_i;
- greedy: gain_i = <M_i, phi'(x)> over the unselected; the argmax is picked (the first in pool
  order on ties); x += M_i; to the budget. `gain="exact"` uses F(x + M_i) - F(x) instead.

Two implementations of the same rule:
- `dense`: the reference's own arithmetic (torch, float32, dense V and M, every gain every step);
- `fast` (default): V and P sparse, gains = V (P phi'(x)) in float64, and lazy greedy. With V, P
  >= 0 and phi concave, phi'(x) only falls as x grows, so a candidate's gain never rises: a max-heap
  of stale gains (upper bounds) needs re-evaluating only at its top, and picks exactly what the
  eager loop picks (ties go to the lower pool position in both). For other parameters the fast
  mode evaluates every gain every step (sparse), and says so in the run's counts.

Both compare gains to float32's precision (`compared`), so gains equal in exact arithmetic are ties
broken by pool order rather than by float64 rounding noise.

Pool order, which breaks ties, is the input order (each sample's first provenance row), as the
reference's is the order of its jsonl file.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from curate.errors import CurateError
from curate.labels import Vocabulary, load_vocab
from curate.labels.graph import LabelGraph, PoolLabels, pool_labels, similarity_graph
from curate.models.embed import DEFAULT_MODEL
from curate.selectors.base import Pool, Selection, Selector, register

PHIS = ("pow", "exp")
GAINS = ("reference", "exact")
IMPLS = ("fast", "dense")
DENSE_CHUNK = 4096       # rows of M per block when the dense mode computes exact gains


@dataclass(frozen=True)
class Phi:
    """The information function and its derivative, for numpy arrays or torch tensors (`xp`)."""

    kind: str = "pow"
    a: float = 1e-6
    b: float = 0.8
    alpha: float = 1.0

    def value(self, x, xp=np):
        return (x + self.a) ** self.b if self.kind == "pow" else 1 - xp.exp(-self.alpha * x)

    def derivative(self, x, xp=np):
        # the reference's expressions (`_d_phi_pow`, `_d_phi_exp`), in the same order of operations
        return self.b * (x + self.a) ** (self.b - 1) if self.kind == "pow" else self.alpha * xp.exp(-self.alpha * x)

    @property
    def concave(self) -> bool:
        """phi' non-increasing on x >= 0: what makes gains only fall, and lazy greedy exact."""
        return self.kind == "exp" or 0 <= self.b <= 1


# -- the propagation matrix and the sample vectors ---------------------------------------------------

def propagation_matrix(weights: sp.spmatrix, prop_weight: float, names: list[str] | None = None) -> sp.csr_matrix:
    """P = diag(W) + prop_weight * offdiag(W), columns divided by their sums (float64, sparse)."""
    w = sp.coo_matrix(weights, dtype=np.float64)
    data = np.where(w.row == w.col, w.data, w.data * prop_weight)
    column_sums = np.bincount(w.col, weights=data, minlength=w.shape[1])
    empty = np.flatnonzero(column_sums == 0)
    if len(empty):
        name = names[empty[0]] if names else f"#{empty[0]}"
        raise CurateError(f"label {name!r} has no edge, not even its self-loop, so its column of P sums to 0 "
                          f"({len(empty)} such labels): lower --sim-threshold (a label's similarity with itself is 1)")
    return sp.csr_matrix((data / column_sums[w.col], (w.row, w.col)), shape=w.shape)


def sample_vectors(rows: np.ndarray, cols: np.ndarray, quality: np.ndarray, n_labels: int,
                   norm: bool = False) -> sp.csr_matrix:
    """V: row i has quality[i] (or quality[i] / |labels_i| with `norm`) at each of its labels."""
    n = len(quality)
    values = quality[rows].astype(np.float64)
    if norm:
        values = values / np.bincount(rows, minlength=n)[rows]
    v = sp.csr_matrix((values, (rows, cols)), shape=(n, n_labels))
    v.sort_indices()
    return v


# -- the dense mode: the reference's arithmetic ------------------------------------------------------

@dataclass
class GreedyResult:
    order: list[int]                 # row indices of V, in the order picked
    gains: list[float]               # the gain of each pick when it was picked
    lazy: bool = False
    evaluations: int = 0             # gains computed (the eager loop: every candidate every step)


def _dense(matrix: sp.spmatrix, dtype: str):
    """A sparse matrix as a dense torch tensor of `dtype`, without a float64 copy on the way."""
    import torch

    coo = sp.coo_matrix(matrix)
    dense = np.zeros(coo.shape, dtype=dtype)
    dense[coo.row, coo.col] = coo.data
    return torch.from_numpy(dense)


def greedy_dense(vectors: sp.spmatrix, weights: sp.spmatrix, prop_weight: float, phi: Phi, budget: int,
                 gain: str = "reference", dtype: str = "float32") -> GreedyResult:
    """The reference's `MIGSampler.sample`: dense P, V, M = V P; every gain every step; first argmax.

    `dtype` float32 is the reference's (`.float()`); float64 exists to test the fast mode's logic
    against the same rule without float32 rounding.
    """
    import torch

    torch_dtype = getattr(torch, dtype)
    w = _dense(weights, dtype)
    # calc_prop_matrix
    n = w.size(0)
    mask = torch.eye(n, dtype=torch_dtype)
    p = w * mask + w * (1 - mask) * prop_weight
    p = p / p.sum(axis=0)
    m = _dense(vectors, dtype) @ p
    del w, mask
    available = torch.ones(m.shape[0], dtype=torch.bool)
    x = torch.zeros(n, dtype=torch_dtype)
    result = GreedyResult(order=[], gains=[], lazy=False)
    for _ in range(min(budget, m.shape[0])):
        if gain == "reference":
            gains = m @ phi.derivative(x, torch).to(torch_dtype)
        else:
            base = phi.value(x, torch)
            gains = torch.cat([(phi.value(x + m[s:s + DENSE_CHUNK], torch) - base).sum(axis=1)
                               for s in range(0, m.shape[0], DENSE_CHUNK)])
        result.evaluations += int(available.sum())
        gains[~available] = -torch.inf      # the reference evaluates m[mask] only: same argmax, same first index
        picked = int(np.argmax(compared(gains.numpy())))   # at the reference's float32, argmax(gains) itself
        result.order.append(picked)
        result.gains.append(float(gains[picked]))
        x += m[picked]
        available[picked] = False
    return result


# -- the fast mode: sparse, lazy ---------------------------------------------------------------------

def _row_sums(matrix: sp.csr_matrix, rows: np.ndarray, term) -> np.ndarray:
    """sum over each row r in `rows` of term(values, columns): each row summed left to right, so a
    row's sum is the same number whichever batch it is computed in."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(len(rows)), lengths)
    positions = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[owner]
    return np.bincount(owner, weights=term(matrix.data[positions], matrix.indices[positions]),
                       minlength=len(rows))


class _FastGains:
    """Current gains of any candidates, for the state x (updated by `add`)."""

    def __init__(self, vectors: sp.csr_matrix, propagation: sp.csr_matrix, phi: Phi, gain: str):
        self.vectors, self.propagation, self.phi, self.gain = vectors, propagation, phi, gain
        self.m = (vectors @ propagation).tocsr()
        self.m.sort_indices()
        self.x = np.zeros(vectors.shape[1])
        self._refresh()

    def _refresh(self) -> None:
        if self.gain == "reference":
            self.u = self.propagation @ self.phi.derivative(self.x)   # gain = V (P phi'(x)) = <M_i, phi'(x)>

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.gain == "reference":
            return _row_sums(self.vectors, rows, lambda values, cols: values * self.u[cols])
        x, value = self.x, self.phi.value
        return _row_sums(self.m, rows, lambda values, cols: value(x[cols] + values) - value(x[cols]))

    def add(self, row: int) -> None:
        start, end = self.m.indptr[row], self.m.indptr[row + 1]
        self.x[self.m.indices[start:end]] += self.m.data[start:end]
        self._refresh()


def compared(gains: np.ndarray) -> np.ndarray:
    """Gains as the greedy compares them: rounded to float32's 24 significant bits (the reference's
    precision, without float32's underflow; below float64's smallest normal number, 0). Gains equal in exact arithmetic (s/3 at three fresh
    labels against s at one) differ in float64's last bits; rounded, they are equal (unless they
    straddle a rounding boundary, about once in 10^9), so the tie goes to the first in pool order,
    as the rule says. Rounding is monotone: gains that only fall still only fall, so lazy greedy
    stays exact."""
    gains = np.asarray(gains, dtype=np.float64)
    mantissa, exponent = np.frexp(np.where(np.abs(gains) < np.finfo(np.float64).tiny, 0.0, gains))  # no subnormals
    return np.ldexp(np.round(mantissa * 2.0**24) / 2.0**24, exponent)


ROW_BITS = 29                  # compared gains have 24-bit significands: the low 29 bits of their float64 are 0
ROW_MASK = (1 << ROW_BITS) - 1


def heap_keys(gains: np.ndarray, rows: np.ndarray) -> list[int]:
    """One int per candidate, smaller for a higher compared gain, then for a lower row: heap entries
    that compare as machine integers, not (gain, row) tuples, so the heap works twice as fast."""
    bits = (compared(gains) + 0.0).view(np.uint64)            # + 0.0: no -0.0
    sign = np.uint64(1 << 63)
    ordered = np.where(bits & sign, ~bits, bits | sign) >> np.uint64(ROW_BITS)   # increasing with the gain
    top = np.uint64((1 << (64 - ROW_BITS)) - 1)
    return (((top - ordered) << np.uint64(ROW_BITS)) | rows.astype(np.uint64)).tolist()


def greedy_fast(vectors: sp.csr_matrix, propagation: sp.csr_matrix, phi: Phi, budget: int,
                gain: str = "reference", lazy: bool | None = None) -> GreedyResult:
    """The same greedy rule as `greedy_dense`; lazy when that is exact (lazy=None: decide)."""
    n = vectors.shape[0]
    budget = min(budget, n)
    monotone = (phi.concave and (vectors.data >= 0).all() and (propagation.data >= 0).all())
    lazy = bool(monotone) if lazy is None else lazy
    if lazy and not monotone:
        raise ValueError("lazy greedy is exact only with V, P >= 0 and a concave phi")
    if n > ROW_MASK:
        raise CurateError(f"{n:,} candidates: the fast mode handles at most {ROW_MASK:,}")
    gains_of = _FastGains(vectors, propagation, phi, gain)
    everyone = np.arange(n)
    gains = gains_of(everyone)
    result = GreedyResult(order=[], gains=[], lazy=lazy, evaluations=n)
    if not lazy:
        available = np.ones(n, dtype=bool)
        for step in range(budget):
            if step:
                gains = np.full(n, -np.inf)
                gains[available] = gains_of(everyone[available])
                result.evaluations += int(available.sum())
            picked = int(np.argmax(np.where(available, compared(gains), -np.inf)))   # first index on ties
            result.order.append(picked)
            result.gains.append(float(gains[picked]))
            available[picked] = False
            gains_of.add(picked)
        return result

    # A min-heap of keys ordering candidates by compared gain, highest first, then by row: the first
    # row wins ties, as argmax's first index does. A bound is fresh when computed at the current
    # step; the top is picked only when fresh, so every other candidate's gain <= its bound <= the top's.
    heap = heap_keys(gains, everyone)
    heapq.heapify(heap)
    latest = gains.copy()
    computed_at = np.zeros(n, dtype=np.int64)
    step, batch_size = 0, 8
    while len(result.order) < budget:
        top = heap[0] & ROW_MASK
        if computed_at[top] == step:
            heapq.heappop(heap)
            result.order.append(top)
            result.gains.append(float(latest[top]))
            gains_of.add(top)
            step += 1
            batch_size = 8
            continue
        stale = []
        while heap and len(stale) < batch_size and computed_at[heap[0] & ROW_MASK] != step:
            stale.append(heapq.heappop(heap) & ROW_MASK)
        stale = np.asarray(stale)
        latest[stale] = gains_of(stale)
        computed_at[stale] = step
        result.evaluations += len(stale)
        for key in heap_keys(latest[stale], stale):
            heapq.heappush(heap, key)
        batch_size = min(batch_size * 2, 4096)   # re-evaluate in growing batches while the top stays stale
    return result


# -- comparing two selections ------------------------------------------------------------------------

@dataclass
class Comparison:
    equal: bool                                        # the same order
    swapped_ties: list[int] = field(default_factory=list)   # ranks k where k, k+1 are two tied picks swapped
    diverged_at: int | None = None                     # first rank where they differ otherwise
    tie_at_divergence: bool | None = None              # ... from a tie (what follows may then differ)
    relative_gap: float | None = None                  # the two picks' gain gap there
    max_tie_gap: float = 0.0

    @property
    def equal_up_to_ties(self) -> bool:
        return self.diverged_at is None or bool(self.tie_at_divergence)

    def describe(self) -> str:
        if self.equal:
            return "identical"
        swaps = (f"{len(self.swapped_ties)} swapped floating-point ties (relative gap <= {self.max_tie_gap:.1e})"
                 if self.swapped_ties else "")
        if self.diverged_at is None:
            return f"identical but for {swaps}"
        where = (f"different from rank {self.diverged_at + 1}, where "
                 + ("a floating-point tie" if self.tie_at_divergence else "NOT a tie")
                 + f" (relative gap {self.relative_gap:.1e}) sends them apart")
        return f"{where}; before it {swaps}" if swaps else where


def compare_orders(a: list[int], b: list[int], vectors: sp.csr_matrix, propagation: sp.csr_matrix, phi: Phi,
                   gain: str = "reference", rtol: float = 1e-5) -> Comparison:
    """Compare two greedy orders, allowing genuine floating-point ties to differ.

    Walking both orders from the first rank, x is the same for both up to the first rank k where
    they differ; there the two picks' gains are recomputed in float64. If they differ by at most
    `rtol` relative, either pick is the argmax up to rounding: a tie (the reference's float32 gains
    carry about 1e-7 relative error, more as x accumulates). When the next two picks are the same
    two samples swapped, x agrees again and the walk goes on; otherwise the orders part there.
    """
    result = Comparison(equal=list(a) == list(b))
    gains_of = _FastGains(vectors, propagation, phi, gain)
    k, end = 0, min(len(a), len(b))
    while k < end:
        if a[k] == b[k]:
            gains_of.add(a[k])
            k += 1
            continue
        ga, gb = gains_of(np.asarray([a[k], b[k]]))
        gap = float(abs(ga - gb) / max(abs(ga), abs(gb), np.finfo(float).tiny))
        if gap <= rtol and k + 1 < end and (a[k], a[k + 1]) == (b[k + 1], b[k]):
            result.swapped_ties.append(k)
            result.max_tie_gap = max(result.max_tie_gap, gap)
            gains_of.add(a[k])
            gains_of.add(a[k + 1])
            k += 2
            continue
        result.diverged_at, result.tie_at_divergence, result.relative_gap = k, gap <= rtol, gap
        return result
    if len(a) != len(b):
        result.diverged_at = end
    return result


# -- the selector ------------------------------------------------------------------------------------

def input_order(pool: Pool) -> np.ndarray:
    """Pool indices in input order: by each sample's first (source started, file, row); the rest by id."""
    table = pool.fetch(
        "SELECT p.pool_index FROM pool p LEFT JOIN ("
        " SELECT ss.sample_id, min({'started': so.started_at, 'uri': so.uri, 'row': ss.row_number}) AS first"
        " FROM pool q JOIN sample_sources ss USING (sample_id) JOIN sources so USING (source_id)"
        " GROUP BY ss.sample_id) f USING (sample_id) ORDER BY f.first NULLS LAST, p.pool_index")
    return table["pool_index"].to_numpy()


@dataclass
class MIGProblem:
    members: np.ndarray              # pool index of each row of V (the candidates, in input order)
    vectors: sp.csr_matrix           # V
    graph: LabelGraph                # nodes and W
    propagation: sp.csr_matrix       # P
    phi: Phi
    labels: PoolLabels
    quality: np.ndarray              # s, per pool index (NaN: no score)
    candidate: np.ndarray            # per pool index: labelled and scored
    vocab: Vocabulary | None
    seconds: dict[str, float]

    def rows(self, pool: Pool, ids) -> list[int]:
        """Rows of V of the given sample ids (to compare orders with `compare_orders`)."""
        row_of = dict(zip(pool.ids[self.members].tolist(), range(len(self.members))))
        return [row_of[i] for i in ids]


@register
class MIGSelector(Selector):
    """MIG (Chen et al., 2025): greedy maximisation of information over a label graph."""

    name = "mig"

    def __init__(self, label_origin: str | None = None, label_vocab: str | None = None,
                 label_model: str = DEFAULT_MODEL, sim_threshold: float = 0.9, prop_weight: float = 1.0,
                 quality_score: str | None = None, norm: bool = False, phi: str = "pow", phi_a: float = 1e-6,
                 phi_b: float = 0.8, phi_alpha: float = 1.0, gain: str = "reference", impl: str = "fast"):
        self.label_origin = label_origin
        self.label_vocab = label_vocab
        self.label_model = label_model
        self.sim_threshold = sim_threshold
        self.prop_weight = prop_weight
        self.quality_score = quality_score
        self.norm = norm
        self.phi = phi
        self.phi_a = phi_a
        self.phi_b = phi_b
        self.phi_alpha = phi_alpha
        self.gain = gain
        self.impl = impl

    def _check(self) -> Phi:
        for name, value, choices in (("phi", self.phi, PHIS), ("gain", self.gain, GAINS), ("impl", self.impl, IMPLS)):
            if value not in choices:
                raise CurateError(f"--{name} {value!r}: choose from {', '.join(choices)}")
        if self.phi == "pow" and self.phi_a <= 0:
            raise CurateError(f"--phi-a {self.phi_a}: must be > 0 (phi'(0) = b * a^(b-1) is infinite at a = 0)")
        return Phi(self.phi, self.phi_a, self.phi_b, self.phi_alpha)

    def problem(self, pool: Pool) -> MIGProblem:
        """The pool as MIG sees it: candidates in input order, V, the label graph and P."""
        phi = self._check()
        started = time.perf_counter()
        vocab = load_vocab(self.label_vocab) if self.label_vocab else None
        labels = pool_labels(pool, self.label_origin, vocab)
        if self.quality_score is None:
            quality = np.ones(len(pool))
        else:
            quality = pool.scores(self.quality_score)
            if np.isnan(quality).all():
                raise CurateError(f"no pool sample has a {self.quality_score!r} score; name another with "
                                  "--quality-score, or none to weight every sample 1")
        candidate = labels.labelled & ~np.isnan(quality)
        if not candidate.any():
            origin = f"of origin {self.label_origin!r} " if self.label_origin else ""
            raise CurateError(f"no pool sample has labels {origin}(see `curate label --help`)")
        members = input_order(pool)
        members = members[candidate[members]]
        row_of = np.full(len(pool), -1)
        row_of[members] = np.arange(len(members))
        in_candidates = row_of[labels.rows] >= 0
        vectors = sample_vectors(row_of[labels.rows[in_candidates]], labels.cols[in_candidates],
                                 quality[members], len(labels.names), self.norm)
        loaded = time.perf_counter()
        graph = similarity_graph(labels.names, self.sim_threshold, self.label_model, store=pool.store)
        propagation = propagation_matrix(graph.weights, self.prop_weight, labels.names)
        return MIGProblem(members=members, vectors=vectors, graph=graph, propagation=propagation, phi=phi,
                          labels=labels, quality=quality, candidate=candidate, vocab=vocab,
                          seconds={"load": loaded - started, "graph": time.perf_counter() - loaded})

    def greedy(self, problem: MIGProblem, budget: int | None) -> GreedyResult:
        budget = problem.vectors.shape[0] if budget is None else budget
        if self.impl == "dense":
            return greedy_dense(problem.vectors, problem.graph.weights, self.prop_weight, problem.phi, budget,
                                self.gain)
        return greedy_fast(problem.vectors, problem.propagation, problem.phi, budget, self.gain)

    def select(self, pool: Pool, budget: int | None) -> Selection:
        problem = self.problem(pool)
        started = time.perf_counter()
        result = self.greedy(problem, budget)
        seconds = {**problem.seconds, "greedy": time.perf_counter() - started}

        labels, quality = problem.labels, problem.quality
        picked = problem.members[np.asarray(result.order, dtype=np.int64)]
        names = np.asarray(labels.names, dtype=object)
        starts, ends = np.searchsorted(labels.rows, picked), np.searchsorted(labels.rows, picked, side="right")
        details = [{"quality": float(quality[i]), "labels": names[labels.cols[s:e]].tolist()}
                   for i, s, e in zip(picked, starts, ends)]
        dropped = np.flatnonzero(~problem.candidate)
        unlabelled = "no labels" + (f" of origin {self.label_origin!r}" if self.label_origin else "")
        weights = problem.graph.weights
        return Selection(
            ids=pool.ids[picked].tolist(), scores=result.gains,
            reasons=[f"max information gain ({self.gain})"] * len(picked), details=details,
            dropped_ids=pool.ids[dropped].tolist(),
            dropped_reasons=[unlabelled if not labels.labelled[i] else f"no {self.quality_score!r} score"
                             for i in dropped],
            counts={"candidates": len(problem.members), "labels": len(labels.names),
                    "edges": int((weights.nnz - np.count_nonzero(weights.diagonal())) // 2),
                    "label_vocab_sha256": problem.vocab.sha256 if problem.vocab else None, "lazy": bool(result.lazy),
                    "evaluations": result.evaluations, "seconds": {k: round(v, 3) for k, v in seconds.items()}},
        )
