"""Sparse autoencoder: TopK (default), BatchTopK, ReLU+L1.

References: Gao et al. 2024, "Scaling and evaluating sparse autoencoders" (TopK, AuxK,
unit-norm decoder, tied init, lr scaling); Bussmann et al. 2024, "BatchTopK Sparse
Autoencoders"; Bricken et al. 2023, "Towards Monosemanticity" (ReLU+L1).

Only the encoder's forward matmul is dense. Its backward and the whole decoder touch
the k active latents of each row (CSR sparse products and ``embedding_bag``), so the
cost of everything but that one matmul does not grow with the dictionary size.

That matmul's [batch, num_latents] output is written into one buffer kept between
training steps: a fresh one is hundreds of MB, which the C allocator maps anew and the
kernel zero-fills page by page on every step (measured on the 2-core machine: 0.94 s for
``relu(addmm)`` into fresh memory, 0.60 s into the kept buffer, at 4096 x 1024 x 8192).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from artifact_schemas import atomic_path, write_text_atomic
from sae_core.sae.config import SaeConfig


class EncoderOutput(NamedTuple):
    latent_acts: Tensor
    """Activations of the selected latents, [batch, k] (relu: [batch, num_latents])."""
    latent_indices: Tensor
    """Which latents they are, [batch, k] (relu: every latent)."""


class ForwardOutput(NamedTuple):
    sae_out: Tensor
    """Reconstruction in the input's units, [batch, d_in]."""
    latent_acts: Tensor
    """Activations of the active latents."""
    latent_indices: Tensor
    """Indices of the active latents."""
    fvu: Tensor
    """Fraction of variance unexplained (training objective for topk/batchtopk)."""
    auxk_loss: Tensor
    """AuxK loss: how well dead latents model the residual (0 when none are dead)."""
    l1_loss: Tensor
    """Mean L1 norm of the latent activations (the relu penalty; logged for the others)."""


def _csr(rows: int, cols: int, row_ids: Tensor, col_ids: Tensor, values: Tensor) -> Tensor:
    """A [rows, cols] CSR matrix from COO triplets (row_ids need not be sorted)."""
    order = torch.argsort(row_ids, stable=True)
    counts = torch.bincount(row_ids, minlength=rows)
    crow = torch.zeros(rows + 1, dtype=torch.long, device=values.device)
    crow[1:] = counts.cumsum(0)
    with warnings.catch_warnings():
        # CSR products are exactly what the sparse backward needs; torch labels them "beta".
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(
            crow, col_ids[order], values[order], (rows, cols), check_invariants=False
        )


class _SparseEncode(torch.autograd.Function):
    """relu(x @ W_enc.T + b_enc) at the entries (rows[i], cols[i]), with a sparse backward.

    The forward values come precomputed (they were selected from the dense
    pre-activations without gradient). The gradient of the dense pre-activations is zero
    except at the selected entries, so dW_enc = G.T @ x and dx = G @ W_enc with G a
    sparse [batch, latents] matrix of nnz entries: O(nnz * d) instead of two dense
    O(batch * latents * d) matmuls.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, w_enc: Tensor, b_enc: Tensor, rows: Tensor, cols: Tensor, vals: Tensor
    ) -> Tensor:
        ctx.save_for_backward(x, w_enc, rows, cols, vals)
        return vals.clone()

    @staticmethod
    def backward(ctx: Any, grad_vals: Tensor) -> tuple[Tensor | None, ...]:
        x, w_enc, rows, cols, vals = ctx.saved_tensors
        grad = torch.where(vals > 0, grad_vals, 0.0)  # relu
        batch, latents = x.shape[0], w_enc.shape[0]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _csr(batch, latents, rows, cols, grad) @ w_enc
        if ctx.needs_input_grad[1]:
            grad_w = _csr(latents, batch, cols, rows, grad) @ x
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(latents, dtype=grad.dtype, device=grad.device).index_add_(0, cols, grad)
        return grad_x, grad_w, grad_b, None, None, None


def _encode_at(sae: SparseCoder, centred: Tensor, idx: Tensor, vals: Tensor) -> Tensor:
    """Differentiable activations [batch, k] at latent indices ``idx`` [batch, k]."""
    batch, per_row = idx.shape
    rows = torch.arange(batch, device=idx.device).repeat_interleave(per_row)
    flat = _SparseEncode.apply(centred, sae.W_enc, sae.b_enc, rows, idx.reshape(-1), vals.reshape(-1))
    return flat.reshape(batch, per_row)


def sparse_decode(indices: Tensor, acts: Tensor, w_dec: Tensor) -> Tensor:
    """sum_j acts[b, j] * W_dec[indices[b, j]]: [batch, d_in], reading only the active rows.

    Its own function so that a faster kernel (e.g. Triton on GPU) can replace it.
    """
    return nn.functional.embedding_bag(indices, w_dec, per_sample_weights=acts, mode="sum")


class SparseCoder(nn.Module):
    """x -> sparse latents -> x_hat, with a unit-norm decoder and a data-derived input scale."""

    input_scale: Tensor
    threshold: Tensor

    def __init__(
        self, cfg: SaeConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        self.cfg = cfg
        generator = torch.Generator().manual_seed(0)
        w_dec = torch.randn(cfg.num_latents, cfg.d_in, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec.to(device, dtype))
        # Tied initialisation: the encoder starts as the decoder's transpose (Gao et al. sec. 2.3).
        self.W_enc = nn.Parameter(self.W_dec.detach().clone())  # [num_latents, d_in]
        self.b_enc = nn.Parameter(torch.zeros(cfg.num_latents, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dtype))
        # Inputs are multiplied by input_scale so that E||x||^2 = d_in, whatever the layer's norm.
        self.register_buffer("input_scale", torch.ones((), device=device, dtype=dtype))
        # BatchTopK's inference threshold (running estimate of the smallest kept activation).
        self.register_buffer("threshold", torch.zeros((), device=device, dtype=dtype))
        # The training forward's pre-activations, reused across steps (module docstring);
        # not state: never saved, rebuilt when the batch shape changes.
        self._pre_buffer: Tensor | None = None

    def _training_pre_acts(self, centred: Tensor) -> Tensor:
        """relu(centred @ W_enc.T + b_enc) without gradient, into the kept buffer."""
        shape = (centred.shape[0], self.cfg.num_latents)
        buf = self._pre_buffer
        if buf is None or buf.shape != shape or buf.dtype != centred.dtype or buf.device != centred.device:
            buf = self._pre_buffer = torch.empty(shape, dtype=centred.dtype, device=centred.device)
        with torch.no_grad():
            return torch.addmm(self.b_enc, centred, self.W_enc.T, out=buf).relu_()

    # -- initialisation from data ------------------------------------------------------

    @torch.no_grad()
    def init_from_data(self, sample: Tensor) -> None:
        """Set input_scale from the sample's mean squared norm, b_dec to its geometric median,
        and the encoder part of the way to the scale that reconstructs the sample best."""
        sample = sample.to(self.W_dec.dtype)
        mean_sq = sample.pow(2).sum(dim=1).mean()
        self.input_scale.copy_(torch.sqrt(self.cfg.d_in / mean_sq.clamp_min(1e-12)))
        self.b_dec.copy_(geometric_median(sample * self.input_scale))
        # Half-way (geometrically) from the tied scale to the least-squares one (below).
        # One scalar needs few rows: 8192 cost 0.3 s where the whole 65,536-row sample took 2.
        self.W_enc.mul_(self._least_squares_encoder_scale(sample[:8192] * self.input_scale).sqrt())

    @torch.no_grad()
    def _least_squares_encoder_scale(self, scaled: Tensor, chunk: int = 4096) -> Tensor:
        """The factor s minimising ||s * decode(encode(x)) - x||^2 over the (scaled) sample.

        The tied encoder (a copy of the unit-norm decoder) selects the k largest of many
        random projections, and their sum overshoots the input several-fold (s is about
        0.33 on the demo's layer 3): the first reconstructions had FVU 1.23, worse than the
        mean, and took ~40 steps to come down (issue 38). ReLU and top-k commute with a
        positive scale of W_enc (b_enc is 0 here), and decode is linear in the
        activations, so one scalar sets the reconstruction's scale exactly. Starting at s
        itself learns fastest but leaves 40% of the latents dead: with no overshoot to
        correct, the first latents chosen keep their places. sqrt(s) keeps a little
        overshoot: after 200 steps held-out FVU 0.037 with 12% dead, against 0.064 and 2%
        tied and 0.036 and 43% at s (docs/sae.md has the ablation). sparsify's encoder
        starts at a similar scale by another route (nn.Linear's default init, rows of
        norm ~0.58)."""
        dot, norm = scaled.new_zeros((), dtype=torch.float64), scaled.new_zeros((), dtype=torch.float64)
        for rows in scaled.split(chunk):
            pre = self.pre_acts(rows)
            rows = rows - self.b_dec
            if self.cfg.activation == "relu":
                recon = pre @ self.W_dec
            else:  # batchtopk keeps k per row on average: per-row top-k is its scale too
                acts, idx = pre.topk(self.cfg.k, dim=1, sorted=False)
                recon = sparse_decode(idx, acts, self.W_dec)
            dot += (recon * rows).double().sum()
            norm += recon.double().pow(2).sum()
        if not norm > 0:  # nothing fired (a constant sample): leave the tied scale
            return scaled.new_ones(())
        return (dot / norm).clamp_min(1e-3).to(scaled.dtype)

    # -- forward -------------------------------------------------------------------------

    def pre_acts(self, x: Tensor) -> Tensor:
        """relu pre-activations of every latent, [batch, num_latents] (x already scaled)."""
        return torch.relu(torch.addmm(self.b_enc, x - self.b_dec, self.W_enc.T))

    def encode(self, x: Tensor) -> EncoderOutput:
        """Sparse code of raw inputs ``x`` [batch, d_in] (no gradient bookkeeping)."""
        with torch.no_grad():
            pre = self.pre_acts(x * self.input_scale)
            if self.cfg.activation == "topk":
                acts, idx = pre.topk(self.cfg.k, dim=1, sorted=False)
            elif self.cfg.activation == "batchtopk":
                # At inference BatchTopK is a JumpReLU with the learned global threshold.
                acts, idx = _threshold_to_dense_indices(pre, self.threshold)
            else:
                acts = pre
                idx = torch.arange(pre.shape[1], device=pre.device).expand_as(pre)
        return EncoderOutput(acts, idx)

    def decode(self, acts: Tensor, indices: Tensor) -> Tensor:
        """Reconstruction in the input's units from a sparse code."""
        return (sparse_decode(indices, acts, self.W_dec) + self.b_dec) / self.input_scale

    def forward(
        self, x: Tensor, dead_mask: Tensor | None = None, across: Callable[[Tensor], Tensor] | None = None
    ) -> ForwardOutput:
        """Encode, decode and compute the losses for a batch of raw inputs [batch, d_in].

        ``latent_acts`` and ``latent_indices`` have the same shape; entry i is the activation
        of latent ``latent_indices[i]`` (topk: [batch, k]; batchtopk: flat; relu: dense).
        ``across`` sums a tensor over the ranks of a data-parallel step: the losses are then
        normalised by the whole step's variance and rows, so that the ranks' losses add up
        to the loss of all their rows at once.
        """
        xs = x * self.input_scale
        centred = xs - self.b_dec
        auxk = xs.new_zeros(())
        if self.cfg.activation == "relu":
            acts = torch.relu(torch.addmm(self.b_enc, centred, self.W_enc.T))
            recon = acts @ self.W_dec + self.b_dec
            idx = torch.arange(acts.shape[1], device=acts.device).expand_as(acts)
        else:
            pre = self._training_pre_acts(centred)
            if self.cfg.activation == "topk":
                top_vals, idx = pre.topk(self.cfg.k, dim=1, sorted=False)
                acts = _encode_at(self, centred, idx, top_vals)
                recon = sparse_decode(idx, acts, self.W_dec) + self.b_dec
            else:
                acts, idx, recon = self._batch_topk(centred, pre)
            if dead_mask is not None and bool(dead_mask.any()):
                auxk = self._auxk(centred, xs - recon.detach(), pre, dead_mask, across)
        err = recon - xs
        fvu = err.pow(2).sum() / _spread(xs, across).clamp_min(1e-12)
        rows = x.shape[0] if across is None else across(x.new_tensor(float(x.shape[0])))
        l1 = acts.abs().sum() / rows
        return ForwardOutput(recon / self.input_scale, acts, idx, fvu, auxk, l1)

    def _batch_topk(self, centred: Tensor, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, latents = pre.shape
        flat_vals, flat_pos = pre.reshape(-1).topk(self.cfg.k * batch, sorted=False)
        with torch.no_grad():
            # Running estimate of the inference threshold (Bussmann et al. sec. 3).
            positive = flat_vals[flat_vals > 0]
            if positive.numel():
                self.threshold.lerp_(positive.min(), 0.01 if bool(self.threshold > 0) else 1.0)
        rows, cols = flat_pos // latents, flat_pos % latents
        acts = _SparseEncode.apply(centred, self.W_enc, self.b_enc, rows, cols, flat_vals)
        # Rows hold different numbers of latents: decode with a sparse [batch, latents] product.
        code = torch.sparse_coo_tensor(torch.stack([rows, cols]), acts, pre.shape, check_invariants=False)
        recon = torch.sparse.mm(code, self.W_dec) + self.b_dec
        return acts, cols, recon

    def _auxk(
        self,
        centred: Tensor,
        residual: Tensor,
        pre: Tensor,
        dead_mask: Tensor,
        across: Callable[[Tensor], Tensor] | None,
    ) -> Tensor:
        """How well the top dead latents reconstruct the residual, normalised by its variance.

        May overwrite ``pre`` (the kept buffer, no longer needed once the live top-k is taken):
        the masked path does, the gather of few dead columns reads it only."""
        dead = dead_mask.nonzero().squeeze(1)
        k_aux = min(self.cfg.d_in // 2, dead.numel())
        if 4 * dead.numel() < dead_mask.numel():
            # Few dead: rank only their columns. On the demo's layer 3 (4096 x 8192, 7-11%
            # dead) the trainer's late steps took 135 ms, against 152 with the whole buffer
            # masked and ranked (issue 38); from ~30% dead the gather's copy costs more
            # than it saves.
            vals, pos = pre.index_select(1, dead).topk(k_aux, dim=1, sorted=False)
            idx = dead[pos]
        else:
            masked = pre.masked_fill_(~dead_mask[None, :], 0.0)
            vals, idx = masked.topk(k_aux, dim=1, sorted=False)
        acts = _encode_at(self, centred, idx, vals)
        residual_hat = sparse_decode(idx, acts, self.W_dec)
        scale = _spread(residual, across).clamp_min(1e-12)
        return torch.nan_to_num((residual_hat - residual).pow(2).sum() / scale, nan=0.0)

    # -- decoder constraints ---------------------------------------------------------------

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out the gradient component that would only change a decoder row's norm."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    # -- checkpoints -----------------------------------------------------------------------

    def save_to_disk(self, path: str | Path) -> None:
        """Write ``cfg.json`` + ``sae.safetensors``: readable without the trainer."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(path / "sae.safetensors") as tmp:
            save_file(tensors, str(tmp))
        write_text_atomic(path / "cfg.json", json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_from_disk(cls, path: str | Path, device: str | torch.device = "cpu") -> SparseCoder:
        path = Path(path)
        for name in ("cfg.json", "sae.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: missing; expected an SAE checkpoint directory")
        cfg = SaeConfig.from_dict(json.loads((path / "cfg.json").read_text()))
        sae = cls(cfg, device=device)
        sae.load_state_dict(load_file(str(path / "sae.safetensors"), device=str(device)))
        return sae


def _spread(x: Tensor, across: Callable[[Tensor], Tensor] | None) -> Tensor:
    """sum_i ||x_i - mean||^2 over the batch; with ``across``, over every rank's rows."""
    if across is None:
        return (x - x.mean(dim=0)).pow(2).sum()
    x = x.detach()  # a loss's denominator: a constant, as in one process
    rows = across(x.new_tensor(float(x.shape[0])))
    mean = across(x.sum(dim=0)) / rows
    return across((x - mean).pow(2).sum())


def _threshold_to_dense_indices(pre: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    # A fixed-width code: the top-m of each row where m is the largest active count in the
    # batch; entries below the threshold are zeroed (they contribute nothing to decode).
    active = pre > threshold
    m = max(1, int(active.sum(dim=1).max()))
    vals, idx = pre.topk(m, dim=1, sorted=False)
    return torch.where(vals > threshold, vals, 0.0), idx


@torch.no_grad()
def geometric_median(points: Tensor, max_iter: int = 100, tol: float = 1e-5) -> Tensor:
    """Weiszfeld's algorithm; the b_dec initialisation of Bricken et al. 2023 and sparsify."""
    guess = points.mean(dim=0)
    for _ in range(max_iter):
        prev = guess
        weights = 1 / torch.norm(points - guess, dim=1).clamp_min(1e-8)
        guess = (weights[:, None] * points).sum(dim=0) / weights.sum()
        if torch.norm(guess - prev) < tol:
            break
    return guess
