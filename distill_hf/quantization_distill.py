"""Residual vector quantizer of the Distill RVQ-VAE.

Each level holds one EMA codebook (van den Oord et al. 2017, "Neural Discrete Representation Learning",
appendix A.1, with the Laplace-smoothed cluster sizes of the VQ-VAE-2 / SoundStream recipe) and quantizes the
residual left by the levels before it (Zeghidour et al. 2021, "SoundStream", algorithm 1). Training-time extras,
matching the original Distill model (which used vector-quantize-pytorch 1.27):

* k-means initialisation of an empty codebook on the first batch it sees;
* replacement of "dead" codes whose EMA assignment count fell below a threshold by random batch vectors;
* gradients through the quantizer by the rotation trick (Fifty et al. 2024, arXiv:2410.06424, section 4.2)
  instead of the straight-through estimator;
* a per-level commitment MSE between the input and its (detached) code vector.

All distances and statistics are computed in float32 with autocast disabled; codebook state lives in buffers
and changes only in training mode (k-means initialisation excepted), always under `torch.no_grad()`.

Under data parallelism (an initialised `torch.distributed` process group with more than one process) the
codebooks are buffers that no gradient all-reduce touches, so the statistics are synchronised here: k-means
seeds come from rank 0 and its per-iteration counts and sums are all-reduced, the EMA counts and vector sums are
all-reduced before every update, and dead codes are replaced by vectors drawn on rank 0 and broadcast. Every rank
therefore holds identical codebooks, equal to what one process would compute on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes in place (no-op in a single process)."""
    if _is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_first_rank_(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite `tensor` with rank 0's values in place (no-op in a single process)."""
    if _is_distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def negative_euclidean_distances(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """
    `-||v - c||` for every pair, via one matrix product: `(N, D), (K, D) -> (N, K)`.

    The expansion `|v|^2 + |c|^2 - 2 v.c` (clamped at 0 before the square root) is the same arithmetic the
    original used, so that nearest codes agree even for near-ties.
    """
    vectors_sq = vectors.pow(2).sum(dim=-1)  # (N,)
    codebook_sq = codebook.pow(2).sum(dim=-1)  # (K,)
    cross = (vectors @ codebook.t()) * -2  # (N, K)
    squared = vectors_sq[:, None] + codebook_sq[None, :] + cross
    return -squared.clamp(min=0).sqrt()


def sample_vectors(vectors: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of `vectors` `(N, D)` chosen at random: without replacement when `N >= num`."""
    num_vectors = vectors.shape[0]
    if num_vectors >= num:
        indices = torch.randperm(num_vectors, device=vectors.device)[:num]
    else:
        indices = torch.randint(0, num_vectors, (num,), device=vectors.device)
    return vectors[indices]


def ema_inplace_(moving_average: torch.Tensor, new: torch.Tensor, decay: float) -> None:
    """`moving_average <- decay * moving_average + (1 - decay) * new`, in place."""
    moving_average.lerp_(new, 1 - decay)


def laplace_smoothing(counts: torch.Tensor, num_categories: int, eps: float) -> torch.Tensor:
    """Additive smoothing of a count vector into probabilities, so that no cluster has zero size."""
    return (counts + eps) / (counts.sum(dim=-1, keepdim=True) + num_categories * eps)


def kmeans(vectors: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Lloyd's k-means on `vectors` `(N, D)`, seeded with randomly sampled vectors.

    Returns the means `(num_clusters, D)` and the final assignment counts `(num_clusters,)`; a cluster that loses
    all its members keeps its previous mean. Across processes, the seeds are rank 0's and the statistics are
    summed over all ranks, so every rank gets the same result.
    """
    means = broadcast_from_first_rank_(sample_vectors(vectors, num_clusters))  # (K, D), seeds from rank 0
    counts = torch.zeros(num_clusters, dtype=torch.long, device=vectors.device)
    for _ in range(num_iters):
        assignments = negative_euclidean_distances(vectors, means).argmax(dim=-1)  # (N,)
        counts = all_reduce_sum_(torch.bincount(assignments, minlength=num_clusters))  # (K,)
        empty = counts == 0
        sums = all_reduce_sum_(torch.zeros_like(means).index_add_(0, assignments, vectors))  # (K, D)
        new_means = sums / counts.masked_fill(empty, 1)[:, None].to(vectors.dtype)
        means = torch.where(empty[:, None], means, new_means)
    return means, counts


def rotation_trick(inputs: torch.Tensor, quantized: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """
    Pass gradients from `quantized` to `inputs` (both `(N, D)`) by the rotation trick.

    The forward value is (up to rounding) `quantized`; the backward pass treats the map
    `inputs -> |q|/|e| * R e`, with `R` the rotation (a Householder pair) taking `e/|e|` onto `q/|q|`, as a
    constant linear map, so the gradient is rotated and rescaled instead of copied as in straight-through.
    """
    inputs_norm = inputs.norm(dim=-1, keepdim=True)  # (N, 1)
    quantized_norm = quantized.norm(dim=-1, keepdim=True)  # (N, 1)
    u = (inputs / inputs_norm.clamp(min=eps)).detach()  # unit input direction, (N, D)
    q = (quantized / quantized_norm.clamp(min=eps)).detach()  # unit code direction, (N, D)
    w = F.normalize(u + q, p=2, dim=-1, eps=eps)  # bisector, (N, D)
    e = inputs.unsqueeze(1)  # (N, 1, D)
    # R e = e - 2 (e.w) w + 2 (e.u) q, written with batched matmuls as in the paper's efficient form.
    rotated = e - 2 * (e @ w.unsqueeze(2) @ w.unsqueeze(1)) + 2 * (e @ u.unsqueeze(2) @ q.unsqueeze(1))
    scale = (quantized_norm / inputs_norm.clamp(min=eps)).detach()  # (N, 1)
    return rotated.squeeze(1) * scale


class DistillCodebook(nn.Module):
    """
    One EMA codebook: the code vectors, their moving statistics and the updates that maintain them.

    Buffers:
        embed (`torch.FloatTensor` of shape `(codebook_size, codebook_dim)`): the code vectors used for lookup.
        embed_avg (`torch.FloatTensor` of shape `(codebook_size, codebook_dim)`): EMA of the summed vectors
            assigned to each code.
        cluster_size (`torch.FloatTensor` of shape `(codebook_size,)`): EMA of each code's assignment count.
        initted (`torch.BoolTensor` scalar): whether the codebook has been initialised (by k-means or not at all).
    """

    def __init__(
        self,
        *,
        codebook_size: int,
        codebook_dim: int,
        decay: float,
        threshold_ema_dead_code: int,
        kmeans_init: bool,
        kmeans_iters: int,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.decay = decay
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.eps = eps
        self.register_buffer("embed", torch.zeros(codebook_size, codebook_dim))
        self.register_buffer("embed_avg", torch.zeros(codebook_size, codebook_dim))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initted", torch.tensor(False))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Empty state awaiting k-means, or random codes when k-means initialisation is off."""
        if self.kmeans_init:
            self.embed.zero_()
        else:
            nn.init.kaiming_uniform_(self.embed)
        self.embed_avg.copy_(self.embed)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(not self.kmeans_init)

    def nearest_codes(self, vectors: torch.Tensor) -> torch.LongTensor:
        """Index of the nearest code for each row of `vectors` `(N, D)` -> `(N,)`."""
        return negative_euclidean_distances(vectors, self.embed).argmax(dim=-1)

    def lookup(self, codes: torch.LongTensor) -> torch.Tensor:
        """Code vectors for `codes` of any shape -> `(*codes.shape, D)`."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def init_embed_(self, vectors: torch.Tensor) -> None:
        """k-means initialisation from `vectors` `(N, D)`; a no-op once initialised."""
        if self.initted:
            return
        means, counts = kmeans(vectors, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means * counts[:, None])
        self.cluster_size.copy_(counts)
        self.initted.fill_(True)

    @torch.no_grad()
    def update_(self, vectors: torch.Tensor, codes: torch.LongTensor) -> None:
        """
        One EMA step from `vectors` `(N, D)` assigned to `codes` `(N,)`, then dead-code replacement.
        """
        one_hot = F.one_hot(codes, self.codebook_size).to(vectors.dtype)  # (N, K)
        ema_inplace_(self.cluster_size, all_reduce_sum_(one_hot.sum(dim=0)), self.decay)
        ema_inplace_(self.embed_avg, all_reduce_sum_(one_hot.t() @ vectors), self.decay)
        smoothed = laplace_smoothing(self.cluster_size, self.codebook_size, self.eps) * self.cluster_size.sum()
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        self.expire_codes_(vectors)

    @torch.no_grad()
    def expire_codes_(self, vectors: torch.Tensor) -> None:
        """Replace codes whose EMA count is below the threshold by random rows of `vectors` `(N, D)`."""
        if self.threshold_ema_dead_code == 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code  # (K,)
        if not dead.any():
            return
        replacements = broadcast_from_first_rank_(sample_vectors(vectors, int(dead.sum())))  # same on every rank
        self.embed[dead] = replacements
        self.cluster_size[dead] = float(self.threshold_ema_dead_code)
        self.embed_avg[dead] = replacements * self.threshold_ema_dead_code


class DistillResidualVectorQuantizer(nn.Module):
    """
    A stack of `num_quantizers` codebooks, each quantizing the residual of the levels before it.
    """

    def __init__(self, config):
        super().__init__()
        self.commitment_weight = config.commitment_weight
        self.layers = nn.ModuleList(
            DistillCodebook(
                codebook_size=config.codebook_size,
                codebook_dim=config.codebook_dim,
                decay=config.decay,
                threshold_ema_dead_code=config.threshold_ema_dead_code,
                kmeans_init=config.kmeans_init,
                kmeans_iters=config.kmeans_iters,
            )
            for _ in range(config.num_quantizers)
        )

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.LongTensor, torch.Tensor]:
        """
        Args:
            latents (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`): encoder output.

        Returns:
            quantized_representation (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`):
                sum of the levels' code vectors (carrying rotation-trick gradients in training).
            audio_codes (`torch.LongTensor` of shape `(batch_size, num_quantizers, height, width)`).
            commit_loss (`torch.FloatTensor` of shape `(num_quantizers,)`): each level's commitment MSE times
                `commitment_weight`; zeros outside training.
        """
        batch_size, dim, height, width = latents.shape
        with torch.autocast(device_type=latents.device.type, enabled=False):
            vectors = latents.float().permute(0, 2, 3, 1).reshape(-1, dim)  # (B*H*W, D), positions row-major
            residual = vectors
            quantized_sum = torch.zeros_like(vectors)
            codes, commit_losses = [], []
            for codebook in self.layers:
                if not codebook.initted:
                    codebook.init_embed_(residual.detach())
                level_codes = codebook.nearest_codes(residual.detach())  # (B*H*W,)
                level_quantized = codebook.lookup(level_codes)  # (B*H*W, D), no gradient
                if self.training:
                    codebook.update_(residual.detach(), level_codes)
                    commit_losses.append(F.mse_loss(level_quantized, residual) * self.commitment_weight)
                    if residual.requires_grad:
                        level_quantized = rotation_trick(residual, level_quantized)
                residual = residual - level_quantized.detach()
                quantized_sum = quantized_sum + level_quantized
                codes.append(level_codes)
            # No commitment term outside training (as in the original).
            commit_loss = torch.stack(commit_losses) if commit_losses else vectors.new_zeros(len(self.layers))

        # (B*H*W, D) -> (B, D, H, W). Made contiguous: the original decoded a standard (NCHW) layout here, and the
        # convolution kernels round differently for other layouts.
        quantized_representation = quantized_sum.reshape(batch_size, height, width, dim).permute(0, 3, 1, 2)
        quantized_representation = quantized_representation.contiguous()
        audio_codes = torch.stack(codes, dim=-1)  # (B*H*W, Q)
        audio_codes = audio_codes.reshape(batch_size, height, width, -1).permute(0, 3, 1, 2)  # (B, Q, H, W)
        return quantized_representation, audio_codes, commit_loss

    def decode_codes(self, audio_codes: torch.LongTensor) -> torch.Tensor:
        """
        `audio_codes` `(batch_size, num_quantizers, height, width)` -> quantized representation
        `(batch_size, codebook_dim, height, width)`: the sum of each level's code vectors.
        """
        quantized = None
        for level, codebook in enumerate(self.layers):
            vectors = codebook.lookup(audio_codes[:, level])  # (B, H, W, D)
            quantized = vectors if quantized is None else quantized + vectors
        # (B, H, W, D) -> (B, D, H, W) as a permuted (channels-last) view: this is the layout the original decoded
        # codes from, so the decoder's kernels reproduce its output bit for bit.
        return quantized.permute(0, 3, 1, 2)
