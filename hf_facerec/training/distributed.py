"""Partial FC with the class centers sharded across processes: data-parallel body, model-parallel head.

With ``W`` processes, rank ``r`` holds only the rows ``[offset_r, offset_r + n_r)`` of the ``(C, D)`` class
centers (:func:`class_shard_range`; the first ``C % W`` ranks get one more row).  Each step (the insightface
``partial_fc_v2`` / ``DistCrossEntropy`` scheme, An et al. 2022):

1. every rank all-gathers the features ``(B_r, D)`` and labels ``(B_r,)`` of all ranks into the global batch
   ``(B, D)`` (local batch sizes may differ, e.g. a short last batch);
2. it computes margin logits ``(B, C_r')`` of the global batch against its (Partial FC-sampled) shard; the
   margin is applied on the rank that owns the row's positive center, and margins with batch statistics see the
   global batch (AdaFace's norm statistics, CurricularFace's running mean and hard negatives on every shard);
3. the softmax cross-entropy is distributed: ``all_reduce(MAX)`` of the row maxima, ``all_reduce(SUM)`` of the
   sums of exponentials and of the positive logit (held by one rank).  The loss equals one process holding the
   full head over the global batch; every rank returns the same value.

Gradients: each rank gets the exact gradient of that loss w.r.t. its shard of centers.  The gathered features'
gradients are summed over ranks and each rank keeps its own rows, multiplied by ``feature_grad_scale``
(default ``W``) because DDP / FSDP / DeepSpeed *average* the backbone gradients over ranks; with the default the
backbone update equals one process training on the global batch (insightface's AllGather does the same).

Integration (a Trainer subclass gets the rest from :class:`ShardedHeadTrainerMixin`):

* Shard before DDP wraps the model: :func:`shard_margin_head` marks the shard parameters ignored by DDP (each
  rank's shard is its own parameter, never to be broadcast from rank 0 or averaged).  If a wrapper goes around
  the model afterwards, call :func:`ddp_ignore_sharded_heads` on what DDP will wrap.  FSDP: pass the head as
  ``ignored_modules``; DeepSpeed ZeRO would partition the shard again and is not supported.
* Clip with :func:`clip_grad_norm_` (every shard counted once); per-rank norms would clip ranks by different
  factors and the replicated backbone would drift apart.
* Checkpoints: :func:`gathered_margin_head` on *every* rank around ``save_pretrained`` puts the full head in
  place; resume re-shards by itself (a full ``margin_head.weight`` loaded into a shard keeps this rank's rows).
* BatchNorm in the embedding head normalises per rank (``torch.nn.SyncBatchNorm`` for global statistics).
  ElasticFace draws its random margins per rank; a row's margin comes from its owner's draw.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..models.heads import ClassCenterHead, MarginHeadOutput
from ..models.margins import MarginPenalty, check_int

__all__ = [
    "ShardedClassCenterHead",
    "ShardedHeadTrainerMixin",
    "class_shard_range",
    "clip_grad_norm_",
    "ddp_ignore_sharded_heads",
    "gather_margin_head",
    "gathered_margin_head",
    "shard_margin_head",
]



def class_shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(class_offset, num_local_classes)`` of ``rank``'s shard of ``num_classes`` centers.

    The first ``num_classes % world_size`` ranks hold one row more, so shards differ by at most one row and
    concatenating them in rank order gives ``[0, num_classes)``.  Example: 10 classes on 3 ranks -> (0, 4),
    (4, 3), (7, 3).
    """
    check_int(world_size, "world_size", 1)
    check_int(rank, "rank", 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size={world_size}, got {rank}")
    if check_int(num_classes, "num_classes", 1) < world_size:
        raise ValueError(f"cannot shard {num_classes} classes over {world_size} ranks: every rank needs one")
    base, extra = divmod(num_classes, world_size)
    return rank * base + min(rank, extra), base + int(rank < extra)


# ---- collectives ---------------------------------------------------------------------------------------------


def _gather_rows(tensor: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Concatenate every rank's ``(sizes[r], ...)`` tensor in rank order -> ``(sum(sizes), ...)``."""
    longest = max(sizes)
    padded = tensor.contiguous()
    if tensor.shape[0] != longest:  # all_gather needs equal shapes: pad, then trim
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather rows with a backward that sums the gathered gradient over ranks and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, tensor, sizes, rank, group, grad_scale):
        ctx.sizes, ctx.rank, ctx.group, ctx.grad_scale = sizes, rank, group, grad_scale
        return _gather_rows(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        # Each rank's loss is the same global loss, but each rank only differentiated it through its own
        # shard: the sum over ranks is the full gradient w.r.t. the global batch.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]] * ctx.grad_scale, None, None, None, None


class _DistributedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over a row-complete batch whose columns are split across ranks.

    ``forward(logits (B, C_r) float, labels (B,) long column index or -1 where the positive lives on another
    rank, group, world_size) -> scalar``.  Every row's positive must be on exactly one rank.  The backward is
    ``(softmax - one_hot) / B`` on this rank's columns: no communication.
    """

    @staticmethod
    def forward(ctx, logits, labels, group, world_size):
        def reduce(tensor, op):
            if world_size > 1:
                dist.all_reduce(tensor, op=op, group=group)
            return tensor

        row_max = reduce(logits.detach().max(dim=1).values, dist.ReduceOp.MAX)
        shifted = logits.detach() - row_max.unsqueeze(1)
        exp = shifted.exp()
        sum_exp = reduce(exp.sum(dim=1), dist.ReduceOp.SUM)
        valid = labels >= 0
        index = labels.clamp(min=0).unsqueeze(1)
        positive = reduce(torch.where(valid, shifted.gather(1, index).squeeze(1), 0.0), dist.ReduceOp.SUM)
        # log(sum exp) - positive instead of -log(softmax[positive]): no clamp, no underflow to log(0).
        loss = (sum_exp.log() - positive).mean()
        ctx.save_for_backward(exp.div_(sum_exp.unsqueeze(1)), labels)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        prob, labels = ctx.saved_tensors
        grad = prob.scatter_add(1, labels.clamp(min=0).unsqueeze(1), -(labels >= 0).to(prob.dtype).unsqueeze(1))
        return grad * (grad_output / prob.shape[0]), None, None, None


# ---- the sharded head ----------------------------------------------------------------------------------------


class ShardedClassCenterHead(ClassCenterHead):
    """This rank's shard of a :class:`ClassCenterHead`, with the all-gather and the distributed softmax.

    ``forward(features (B_r, D), labels (B_r,) global ids in [0, num_classes))`` ->
    :class:`MarginHeadOutput` with ``loss`` (scalar, the global-batch loss, equal on all ranks), ``logits``
    ``(B, C_r')`` float32 (the *global* batch against this rank's sampled columns) and ``labels`` ``(B,)`` (column
    of each row's positive on this rank, -1 elsewhere).  Partial FC samples ``round(sample_rate * n_r)`` columns
    of this rank's shard, its positives always included.  Build it with :func:`shard_margin_head`.
    """

    def __init__(self, embedding_size: int, num_classes: int, margin, sample_rate: float = 1.0, *, rank: int,
                 world_size: int, group=None, feature_grad_scale: float | None = None):
        if isinstance(margin, MarginPenalty) and type(margin).forward is not MarginPenalty.forward:
            raise ValueError(f"{type(margin).__name__} overrides forward(), which the sharded head never calls (it "
                             "calls apply() with the global positive cosines): override apply() or the _target_logit "
                             "/ _other_logits hooks instead")
        offset, num_local = class_shard_range(num_classes, rank, world_size)
        super().__init__(embedding_size, num_classes, margin, sample_rate, offset, num_local)
        self.rank, self.world_size, self.group = rank, world_size, group
        self.feature_grad_scale = float(world_size if feature_grad_scale is None else feature_grad_scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, world_size={self.world_size}"

    def _check_process_group(self) -> None:
        if self.world_size == 1:
            return
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(f"this head is sharded over {self.world_size} ranks but torch.distributed is not "
                               "initialised (launch with accelerate/torchrun, or init_process_group first)")
        if dist.get_world_size(self.group) != self.world_size or dist.get_rank(self.group) != self.rank:
            raise RuntimeError(f"the head was sharded for rank {self.rank} of {self.world_size}, but this process "
                               f"is rank {dist.get_rank(self.group)} of {dist.get_world_size(self.group)}")

    def _gather(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global batch ``(B, D)`` features (differentiable) and ``(B,)`` labels, in rank order."""
        if self.world_size == 1:
            return features, labels
        count = torch.tensor([features.shape[0]], device=features.device)
        sizes = [int(size) for size in _gather_rows(count, [1] * self.world_size, self.group)]
        all_features = _GatherWithGrad.apply(features, sizes, self.rank, self.group, self.feature_grad_scale)
        return all_features, _gather_rows(labels, sizes, self.group)

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor, group=self.group)
        return tensor

    def _margin_logits(self, cosine: torch.Tensor, local: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """Scaled margin logits ``(B, C_r')`` from cosines ``(B, C_r')`` float32 and local labels ``(B,)``.

        The margin's :meth:`~hf_facerec.models.margins.MarginPenalty.apply` gets every row's positive
        cosine (summed from the owning rank), so batch statistics and hard negatives are global.
        """
        valid = local >= 0
        own = cosine.gather(1, local.clamp(min=0).unsqueeze(1)).squeeze(1)
        everywhere = self._all_reduce(torch.where(valid, own.detach(), 0.0))
        return self.margin.apply(cosine, local, norms, positive_cosine=everywhere)

    def local_logits(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin logits of the *gathered* ``features`` ``(B, D)`` / ``labels`` ``(B,)`` against this shard.

        Collective: every rank must call it with the same global batch (:meth:`forward` does).
        """
        cosine, local, norms = self.sampled_cosine(features, self.to_local_labels(labels))
        return self._margin_logits(cosine.float(), local, norms), local

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> MarginHeadOutput:
        if not isinstance(features, torch.Tensor) or not features.is_floating_point() or features.ndim != 2 \
                or features.shape[1] != self.embedding_size:
            raise ValueError(f"features must be a floating (B, {self.embedding_size}) tensor, got "
                             f"{getattr(features, 'shape', type(features).__name__)}")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != features.shape[0] \
                or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer ({features.shape[0]},) tensor, got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        self._check_process_group()
        all_features, all_labels = self._gather(features, labels.long())
        logits, local = self.local_logits(all_features, all_labels)
        loss = _DistributedCrossEntropy.apply(logits, local, self.group, self.world_size)
        return MarginHeadOutput(loss=loss, logits=logits, labels=local)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Resume: a checkpoint holds the full (num_classes, D) centers; keep this rank's rows.
        key = prefix + "weight"
        weight = state_dict.get(key)
        if weight is not None and weight.shape[0] == self.num_classes != self.num_local_classes:
            state_dict[key] = weight[self.class_offset : self.class_offset + self.num_local_classes]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def full_weight(self) -> torch.Tensor:
        """All ``(num_classes, D)`` centers, gathered from every rank (collective; no gradient)."""
        self._check_process_group()
        if self.world_size == 1:
            return self.weight.detach().clone()
        sizes = [class_shard_range(self.num_classes, r, self.world_size)[1] for r in range(self.world_size)]
        return _gather_rows(self.weight.detach(), sizes, self.group)


# ---- model-level API -----------------------------------------------------------------------------------------


def _head_owner(model: nn.Module) -> nn.Module:
    """The (unique) submodule of ``model`` whose ``margin_head`` is a :class:`ClassCenterHead`."""
    owners = [module for module in model.modules() if isinstance(getattr(module, "margin_head", None), ClassCenterHead)]
    if len(owners) != 1:
        kinds = sorted({type(getattr(m, "margin_head")).__name__ for m in model.modules() if hasattr(m, "margin_head")})
        raise ValueError(f"expected exactly one module with a ClassCenterHead `margin_head` (e.g. a "
                         f"FaceRecForMarginClassification), found {len(owners)}; margin_head types seen: {kinds}. "
                         "Shard before wrapping the head (e.g. peft modules_to_save).")
    return owners[0]


def ddp_ignore_sharded_heads(module: nn.Module) -> list[str]:
    """Tell DistributedDataParallel to leave every :class:`ShardedClassCenterHead` parameter of ``module`` alone.

    ``module`` is what DDP will wrap (names are relative to it).  Keeps names set before; returns the list.
    """
    names = [f"{name}.{pname}" for name, head in module.named_modules() if isinstance(head, ShardedClassCenterHead)
             for pname, _ in head.named_parameters()]
    merged = sorted(set(getattr(module, "_ddp_params_and_buffers_to_ignore", [])) | set(names))
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, merged)
    return merged


def shard_margin_head(model: nn.Module, rank: int, world_size: int, group=None,
                      feature_grad_scale: float | None = None) -> None:
    """Replace ``model.margin_head`` in place by this rank's :class:`ShardedClassCenterHead`.

    The shard keeps rows ``class_shard_range(C, rank, world_size)`` of the existing centers (so the shards of all
    ranks together equal the original head), the same margin module (and its statistics) and sample rate.
    Call it on every rank, with the same initial weights, before the optimiser is built and before DDP wraps
    the model.  ``feature_grad_scale`` defaults to ``world_size`` (see the module docstring).
    """
    owner = _head_owner(model)
    head = owner.margin_head
    if isinstance(head, ShardedClassCenterHead):
        raise ValueError(f"the margin head is already sharded (rank {head.rank} of {head.world_size})")
    if head.class_offset != 0 or head.num_local_classes != head.num_classes:
        raise ValueError("the margin head is already a slice of the classes; shard a full head")
    with torch.device("meta"):  # no throw-away init: it would draw from (and shift) the global RNG
        sharded = ShardedClassCenterHead(head.embedding_size, head.num_classes, head.margin, head.sample_rate,
                                         rank=rank, world_size=world_size, group=group,
                                         feature_grad_scale=feature_grad_scale)
    rows = head.weight.detach()[sharded.class_offset : sharded.class_offset + sharded.num_local_classes]
    sharded.weight = nn.Parameter(rows.clone(), requires_grad=head.weight.requires_grad)
    owner.margin_head = sharded.train(head.training)
    ddp_ignore_sharded_heads(model)


def _full_head(head: ShardedClassCenterHead) -> ClassCenterHead:
    with torch.device("meta"):
        full = ClassCenterHead(head.embedding_size, head.num_classes, head.margin, sample_rate=head.sample_rate)
    full.weight = nn.Parameter(head.full_weight(), requires_grad=head.weight.requires_grad)
    return full.train(head.training)


def gather_margin_head(model: nn.Module) -> None:
    """Undo :func:`shard_margin_head`: every rank gets the full :class:`ClassCenterHead` back (collective).

    A no-op when the head is not sharded.  The full head has a new Parameter: rebuild the optimiser (or shard
    again) before training on; to save mid-training, prefer :func:`gathered_margin_head`.
    """
    owner = _head_owner(model)
    head = owner.margin_head
    if not isinstance(head, ShardedClassCenterHead):
        return
    stale = {name for name, param in model.named_parameters() if param is head.weight}
    owner.margin_head = _full_head(head)
    ignored = getattr(model, "_ddp_params_and_buffers_to_ignore", None)
    if ignored is not None:
        model._ddp_params_and_buffers_to_ignore = [name for name in ignored if name not in stale]


@contextlib.contextmanager
def gathered_margin_head(model: nn.Module) -> Iterator[ClassCenterHead]:
    """Within the block ``model.margin_head`` is the full head (for ``save_pretrained`` / ``state_dict``).

    Collective on entry: every rank must enter (rank 0 alone may save inside).  On exit the shard object, and
    with it the Parameter the optimiser holds, is put back untouched.  Yields the head in use.
    """
    owner = _head_owner(model)
    head = owner.margin_head
    if not isinstance(head, ShardedClassCenterHead):
        yield head
        return
    owner.margin_head = _full_head(head)
    try:
        yield owner.margin_head
    finally:
        owner.margin_head = head


def clip_grad_norm_(model: nn.Module, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` over ``model``'s parameters, counting each head shard once (collective).

    Replicated parameters' gradients are the same on every rank (after DDP's all-reduce); shard gradients
    differ, so their norms are combined over ranks.  Every rank then clips by the same factor.  Returns the
    total norm (a 0-d tensor), as torch's function does.
    """
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type}")
    heads = [m for m in model.modules() if isinstance(m, ShardedClassCenterHead)]
    shard_ids = {id(p) for head in heads for p in head.parameters()}
    params = [p for p in model.parameters() if p.grad is not None]
    replicated = torch.nn.utils.get_total_norm([p.grad for p in params if id(p) not in shard_ids], norm_type)
    shard = torch.nn.utils.get_total_norm([p.grad for p in params if id(p) in shard_ids], norm_type)
    shard = shard.to(replicated.device, torch.float32)
    replicated = replicated.float()
    group = heads[0].group if heads else None
    distributed = any(head.world_size > 1 for head in heads)
    if norm_type == float("inf"):
        if distributed:
            dist.all_reduce(shard, op=dist.ReduceOp.MAX, group=group)
        total = torch.maximum(replicated, shard)
    else:
        shard = shard.pow(norm_type)
        if distributed:
            dist.all_reduce(shard, group=group)
        total = (replicated.pow(norm_type) + shard).pow(1.0 / norm_type)
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


class ShardedHeadTrainerMixin:
    """Mix into a ``transformers.Trainer`` subclass (before ``Trainer`` in the bases) to train a sharded head.

    While the model holds a :class:`ShardedClassCenterHead` (without one every method defers to ``Trainer``):
    gradient clipping and the logged gradient norm count every shard once (:func:`clip_grad_norm_`);
    ``save_model`` (checkpoints included; the Trainer calls it on every rank) writes the full head through
    :func:`gathered_margin_head`; each rank saves its shard's optimiser state next to the Trainer's
    ``optimizer.pt`` (which only holds rank 0's) and loads it back on resume, so a resumed run continues exactly.
    Loading the full checkpoint re-shards by itself (:meth:`ShardedClassCenterHead._load_from_state_dict`).
    """

    def _sharded_head(self) -> ShardedClassCenterHead | None:
        return next((m for m in self.model.modules() if isinstance(m, ShardedClassCenterHead)), None)

    def _clip_grad_norm(self, model):
        if self._sharded_head() is None:
            return super()._clip_grad_norm(model)
        return clip_grad_norm_(model, self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        if grad_norm is None and self._sharded_head() is not None:
            grad_norm = clip_grad_norm_(model, float("inf"))
        return super()._get_grad_norm(model, grad_norm)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        with gathered_margin_head(self.model):
            super().save_model(output_dir, _internal_call)

    def _shard_optimizer_file(self, folder: str, head: ShardedClassCenterHead) -> str:
        return os.path.join(folder, f"margin_head_optimizer_rank{head.rank}-of-{head.world_size}.pt")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        head = self._sharded_head()
        if head is not None:
            os.makedirs(output_dir, exist_ok=True)
            torch.save(dict(self.optimizer.state.get(head.weight, {})), self._shard_optimizer_file(output_dir, head))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        head = self._sharded_head()
        if checkpoint is None or head is None:
            return
        path = self._shard_optimizer_file(checkpoint, head)
        if not os.path.isfile(path):
            raise ValueError(f"{checkpoint} has no optimiser state for this rank's margin-head shard ({path}); it was "
                             f"saved with another world size or without ShardedHeadTrainerMixin")
        state = torch.load(path, map_location=head.weight.device, weights_only=True)
        # Replaces what optimizer.pt gave this parameter: rank 0's shard state (another shape on uneven shards).
        self.optimizer.state[head.weight] = state
