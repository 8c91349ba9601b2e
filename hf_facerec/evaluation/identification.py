"""1:N face identification metrics in pure numpy: rank-k / CMC (closed set), TPIR@FPIR (open set).

Conventions (see :mod:`~hf_facerec.evaluation.verification` for scores and thresholds):

* Probes and gallery entries are embeddings compared by cosine similarity (higher = more similar).
  A gallery entry is one image or one template; to rank identities rather than images, aggregate
  each identity's images first (:func:`~hf_facerec.evaluation.scoring.template_embeddings`).
* A probe is **mated** when its label occurs in the gallery, **non-mated** otherwise.
* **Rank** of a mated probe = 1 + number of non-mated gallery entries scoring >= its best mated
  score (ties count against the probe: a pessimistic, order-independent rule).
* Rank-k accuracy / CMC use the mated probes only (non-mated probes are ignored there).
* Open set (NIST IR 8271, Grother et al., FRVT Part 2; IJB-C 1:N, Maze et al. 2018):
  FPIR(T) = fraction of non-mated probes whose top score is >= T; TPIR(T, R) = fraction of mated
  probes whose mate is within rank R with score >= T. T comes from the package's single
  threshold-at-FAR routine (smallest candidate with FPIR <= target; NaN below 1/#non-mated).

Probes are processed in chunks (one (chunk, G) similarity block at a time, ~64 MB), so 10K probes
against a 100K gallery never hold the 4 GB score matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import _as_embeddings, _as_rates, _json_float, _l2_normalize, _positive_int, _rate_key, _row_norms
from .sample_size import far_measurable
from .roc import _threshold_at_far_sorted

__all__ = [
    "DEFAULT_FPIRS",
    "cmc_curve",
    "identification_report",
    "rank_k_accuracy",
    "similarity_matrix",
    "top_k",
    "tpir_at_fpir",
]

DEFAULT_FPIRS: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
_BLOCK_BYTES = 64 * 2**20


def _prepared(probe, gallery) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probe (P, D) as given, probe L2 norms (P,), unit-norm gallery (G, D)), validated.

    The gallery is normalised once (a copy: it is reused by every chunk); probes are normalised
    chunk by chunk (:func:`_probe_block`) so no second (P, D) copy is held.
    """
    p = _as_embeddings(probe, "probe")
    g = _as_embeddings(gallery, "gallery")
    if p.shape[1] != g.shape[1]:
        raise ValueError(f"probe and gallery dimensions differ: {p.shape[1]} vs {g.shape[1]}")
    dtype = np.result_type(p.dtype, g.dtype)
    return p, _row_norms(p, "probe"), _l2_normalize(g, "gallery").astype(dtype, copy=False)


def _probe_block(p: np.ndarray, norms: np.ndarray, gallery: np.ndarray, sl: slice, out: np.ndarray | None = None):
    """Cosine similarities of probes ``sl`` with the unit-norm gallery: (chunk, G).

    ``out``: a reusable (>= chunk, G) buffer, so a loop holds one block instead of two (the next
    block would otherwise be allocated before the previous one is released).
    """
    unit = (p[sl] / norms[sl, None]).astype(gallery.dtype, copy=False)
    if out is None:
        return unit @ gallery.T
    return np.matmul(unit, gallery.T, out=out[: unit.shape[0]])


def _block_buffer(n_gallery: int, chunks: list[slice], dtype) -> np.ndarray:
    return np.empty((max(sl.stop - sl.start for sl in chunks), n_gallery), dtype=dtype)


def _chunks(n_probes: int, n_gallery: int, chunk_size: int | None):
    """Probe slices of at most ``chunk_size`` rows (default: a ~64 MB float32 block)."""
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_BYTES // (4 * n_gallery))
    chunk_size = _positive_int(chunk_size, "chunk_size")
    return [slice(i, min(i + chunk_size, n_probes)) for i in range(0, n_probes, chunk_size)]


def similarity_matrix(probe, gallery, chunk_size: int | None = None) -> np.ndarray:
    """Cosine similarities of every probe with every gallery entry.

    Args:
        probe: (P, D). gallery: (G, D). chunk_size: probes per block (bounds temporaries).
    Returns:
        (P, G) scores (float32 for float32 inputs). This materialises P x G values; the metric
        functions below never do.
    """
    p, norms, g = _prepared(probe, gallery)
    out = np.empty((p.shape[0], g.shape[0]), dtype=g.dtype)
    for sl in _chunks(p.shape[0], g.shape[0], chunk_size):
        out[sl] = _probe_block(p, norms, g, sl)
    return out


def top_k(probe, gallery, k: int = 5, chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar gallery entries of each probe (argpartition per chunk, then a k-sort).

    Returns:
        ``(scores (P, k), indices (P, k))``, best first; ``k`` is capped at G.
    """
    p, norms, g = _prepared(probe, gallery)
    k = min(_positive_int(k, "k"), g.shape[0])
    scores = np.empty((p.shape[0], k), dtype=g.dtype)
    indices = np.empty((p.shape[0], k), dtype=np.int64)
    chunks = _chunks(p.shape[0], g.shape[0], chunk_size)
    buffer = _block_buffer(g.shape[0], chunks, g.dtype)
    for sl in chunks:
        block = _probe_block(p, norms, g, sl, buffer)
        if k < g.shape[0]:
            part = np.argpartition(-block, k - 1, axis=1)[:, :k]  # unordered top k, O(G) per probe
        else:
            part = np.broadcast_to(np.arange(k), block.shape)
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        indices[sl] = np.take_along_axis(part, order, axis=1)
        scores[sl] = np.take_along_axis(part_scores, order, axis=1)
    return scores, indices


@dataclass(frozen=True)
class _SearchOutcome:
    """Per-probe results of one pass over the gallery. is_mated (P,) bool; ranks (P,) int64
    (0 for non-mated); mated_scores (P,) best mated score (NaN for non-mated); top_scores (P,)
    best score over the whole gallery (NaN for mated: only FPIR needs it)."""

    is_mated: np.ndarray
    ranks: np.ndarray
    mated_scores: np.ndarray
    top_scores: np.ndarray
    n_gallery: int
    n_identities: int


def _mate_table(gallery_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique labels (I,), table (I, max entries per identity)) of gallery columns, -1 padded."""
    unique, codes = np.unique(gallery_labels, return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=unique.size)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    table = np.full((unique.size, counts.max()), -1, dtype=np.int64)
    table[codes[order], np.arange(order.size) - starts[codes[order]]] = order
    return unique, table


def _as_id_labels(labels, n: int, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _search(probe, probe_labels, gallery, gallery_labels, chunk_size=None) -> _SearchOutcome:
    """One chunked pass: mate ranks and scores for every probe (see module docstring for the rules)."""
    p, norms, g = _prepared(probe, gallery)
    probe_labels = _as_id_labels(probe_labels, p.shape[0], "probe_labels")
    gallery_labels = _as_id_labels(gallery_labels, g.shape[0], "gallery_labels")
    kinds = {probe_labels.dtype.kind, gallery_labels.dtype.kind}
    if kinds & set("US") and kinds & set("biuf"):
        # numpy would compare "7" with 7 as simply unequal: every probe would look non-mated.
        raise ValueError(f"probe_labels ({probe_labels.dtype}) and gallery_labels ({gallery_labels.dtype}) are not comparable")
    unique, table = _mate_table(gallery_labels)
    code = np.minimum(np.searchsorted(unique, probe_labels), unique.size - 1)
    is_mated = np.asarray(unique[code] == probe_labels, dtype=bool)
    ranks = np.zeros(p.shape[0], dtype=np.int64)
    mated_scores = np.full(p.shape[0], np.nan)
    top_scores = np.full(p.shape[0], np.nan)
    chunks = _chunks(p.shape[0], g.shape[0], chunk_size)
    buffer = _block_buffer(g.shape[0], chunks, g.dtype)
    for sl in chunks:
        block = _probe_block(p, norms, g, sl, buffer)  # (c, G)
        rows = np.arange(block.shape[0])[:, None]
        # Gallery columns of each probe's identity, -1 padded (a non-mated probe points at an
        # arbitrary identity: its row is dropped below).
        cols = table[code[sl]]
        mate = np.where(cols >= 0, block[rows, cols], -np.inf)  # (c, max entries per identity)
        best = mate.max(axis=1)
        # Whole rows, no fancy-indexed copies of the block: non-mated rows are computed and dropped.
        at_or_above = np.count_nonzero(block >= best[:, None], axis=1)
        # Mated entries tied with the best one are not competitors: subtract them.
        rank = at_or_above - np.count_nonzero(mate >= best[:, None], axis=1) + 1
        mated = is_mated[sl]
        ranks[sl] = np.where(mated, rank, 0)
        mated_scores[sl] = np.where(mated, best, np.nan)
        top_scores[sl] = np.where(mated, np.nan, block.max(axis=1))
    return _SearchOutcome(is_mated, ranks, mated_scores, top_scores, g.shape[0], unique.size)


def _mated_ranks(outcome: _SearchOutcome) -> np.ndarray:
    if not outcome.is_mated.any():
        raise ValueError("no probe label occurs in gallery_labels: rank-k / CMC need mated probes")
    return outcome.ranks[outcome.is_mated]


def _rank_rates(outcome: _SearchOutcome, ks) -> dict[int, float]:
    ranks = _mated_ranks(outcome)
    ks = [_positive_int(k, "k") for k in np.atleast_1d(ks).tolist()]
    return {k: float(np.count_nonzero(ranks <= k) / ranks.size) for k in ks}


def rank_k_accuracy(probe, probe_labels, gallery, gallery_labels, ks=(1, 5), chunk_size: int | None = None) -> dict[int, float]:
    """Closed-set identification rate at each rank k: ``{k: fraction of mated probes with rank <= k}``.

    Args:
        probe: (P, D). probe_labels: (P,). gallery: (G, D). gallery_labels: (G,). ks: ranks >= 1.
    """
    return _rank_rates(_search(probe, probe_labels, gallery, gallery_labels, chunk_size), ks)


def cmc_curve(probe, probe_labels, gallery, gallery_labels, max_rank: int | None = None, chunk_size: int | None = None):
    """Cumulative match characteristic.

    Returns:
        ``(ranks (R,) = 1..R, rates (R,))`` with R = ``max_rank`` (default min(G, 100));
        ``rates[r-1]`` = fraction of mated probes with rank <= r.
    """
    outcome = _search(probe, probe_labels, gallery, gallery_labels, chunk_size)
    ranks = _mated_ranks(outcome)
    max_rank = min(outcome.n_gallery, 100) if max_rank is None else _positive_int(max_rank, "max_rank")
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return np.arange(1, max_rank + 1), np.cumsum(counts) / ranks.size


def _tpir(outcome: _SearchOutcome, fpirs, rank: int) -> dict[float, float]:
    fpirs = _as_rates(fpirs, "fpirs")
    rank = _positive_int(rank, "rank")
    n_mated = int(np.count_nonzero(outcome.is_mated))
    if n_mated == 0 or n_mated == outcome.is_mated.size:
        raise ValueError("TPIR@FPIR needs both mated and non-mated probes (open-set protocol)")
    hits = outcome.is_mated & (outcome.ranks <= rank)
    genuine = np.sort(outcome.mated_scores[hits])
    impostor = np.sort(outcome.top_scores[~outcome.is_mated])
    _, accepted, reachable = _threshold_at_far_sorted(genuine, impostor, fpirs)
    tpirs = np.where(reachable, accepted / n_mated, np.nan)
    return {float(f): float(t) for f, t in zip(fpirs, tpirs)}


def tpir_at_fpir(
    probe, probe_labels, gallery, gallery_labels, fpirs=DEFAULT_FPIRS, rank: int = 1, chunk_size: int | None = None
) -> dict[float, float]:
    """Open-set TPIR at each FPIR target: ``{fpir: tpir}`` (NaN when fpir < 1/#non-mated probes).

    Probes whose label is absent from ``gallery_labels`` are the non-mated searches that set the
    threshold; ``rank`` is R in TPIR(T, R) (1 in IJB-C reports).
    """
    return _tpir(_search(probe, probe_labels, gallery, gallery_labels, chunk_size), fpirs, rank)


def identification_report(
    probe,
    probe_labels,
    gallery,
    gallery_labels,
    ks=(1, 5),
    fpirs=DEFAULT_FPIRS,
    rank: int = 1,
    chunk_size: int | None = None,
) -> dict:
    """Every 1:N number from one gallery pass, JSON-serialisable.

    Keys: ``rank_<k>`` for each k, ``tpir_at_fpir`` (``{"1e-02": tpir}``; ``None`` entries for an
    unmeasurable FPIR; an empty dict when all probes are mated or all non-mated), ``n_probes``,
    ``n_mated``, ``n_non_mated``, ``n_gallery``, ``n_identities``. Rank keys are absent when no
    probe is mated. ``tpir_at_fpir_measurable`` (``{"1e-02": bool}``: FPIR f needs ``ceil(1/f)``
    non-mated probes, :mod:`.sample_size`) and ``unmeasurable`` (e.g. ``["tpir_at_fpir.1e-03"]``).
    """
    outcome = _search(probe, probe_labels, gallery, gallery_labels, chunk_size)
    n_mated = int(np.count_nonzero(outcome.is_mated))
    report: dict = {}
    if n_mated:
        report.update({f"rank_{k}": v for k, v in _rank_rates(outcome, ks).items()})
    open_set = 0 < n_mated < outcome.is_mated.size
    tpirs = _tpir(outcome, fpirs, rank) if open_set else {}
    report["tpir_at_fpir"] = {_rate_key(f): _json_float(t) for f, t in tpirs.items()}
    n_non_mated = int(outcome.is_mated.size - n_mated)
    report["tpir_at_fpir_measurable"] = {_rate_key(f): bool(far_measurable(n_non_mated, f)) for f in tpirs}
    report["unmeasurable"] = [f"tpir_at_fpir.{key}" for key, ok in report["tpir_at_fpir_measurable"].items() if not ok]
    report.update(
        n_probes=int(outcome.is_mated.size),
        n_mated=n_mated,
        n_non_mated=n_non_mated,
        n_gallery=outcome.n_gallery,
        n_identities=outcome.n_identities,
    )
    return report
