"""SS4Rec: continuous-time sequential recommendation with state space models
(Xiao et al. 2025, arXiv 2502.08132).

Each layer:
  1. time-aware SSM (S5-style, diagonal complex state): discretised per position with a
     step that grows with the time gap to the next interaction, so the state decays and
     rotates more across a long gap than across a short one;
  2. relation-aware selective SSM (Mamba/S6-style): input-dependent step, B and C after a
     short depthwise causal convolution;
  3. a position-wise feed-forward;
each followed by dropout, a residual connection and LayerNorm (post-LN, as the paper).
Scores are dot products with the tied item embedding; the training loss is the trainer's (recsys_torch.losses).

Time gaps. Position k steps over the gap from its own timestamp to the next one:
`gap[k] = timestamps[k + 1] - timestamps[k]` (the paper's convention), scaled to
`1 + log1p(gap_seconds / time_unit_seconds)` (so tied timestamps still take a unit step).
The last position steps to `query_timestamps` when given (gap 0 otherwise). Under the
paper's protocol the caller passes the target item's timestamp; in production, the
time the recommendation is made for (docs/SCHEMAS.md `query_timestamp`). For training
windows the next timestamp of the last position is not in the shard, so its gap is 0
(as the query-time protocol's 1 s, near enough). The hidden state at k thus knows when the
next interaction happens, never which item it is.

Step sizes. The paper (S5 with dt in [0.001, 0.1]) multiplies the step by the raw
interval; our intervals are log-scaled to about 1..10, so the time-aware SSM's base
steps start in [time_dt_min, time_dt_max] = [0.01, 1.0], wide enough that a month-long
gap visibly decays the state (with 0.001..0.1 a planted gap-dependent rule was not
learned in 400 steps; with 0.01..1.0 it is learned in under 200).

Padding (0, on the left) is invisible: padded positions take a zero step (decay 1,
input 0) in both SSMs and feed zeros into the convolution, so the hidden state of an
item depends only on the items and times up to it (plus its own gap to the next one).

Both scans run in float32 (autocast disabled) through `chunked_linear_scan`: pure torch,
O(L) memory, about 2 * sqrt(L) sequential steps, each vectorised over batch, chunks and
state.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_torch.model_configs import SS4RecConfig
from recsys_torch.models.base import SequenceModel
from recsys_torch.models.sasrec import init_dense_layers
from recsys_torch.models.selective_scan import selective_scan


def chunked_linear_scan(log_decay: Tensor, inputs: Tensor, chunk_size: int | None = None) -> Tensor:
    """All states of h[t] = exp(log_decay[t]) * h[t-1] + inputs[t], h[-1] = 0, along dim 1.

    log_decay, inputs: [B, L, *state], real or complex. The sequence is cut into chunks:
    (1) every chunk is scanned from a zero state, all chunks at once (chunk_size steps);
    (2) the state entering each chunk is carried across chunks (n_chunks steps);
    (3) each position adds the carried state times its decay since the chunk start.
    """
    batch, length = inputs.shape[:2]
    state_shape = inputs.shape[2:]
    root = max(1, math.isqrt(length))
    divisors = [d for d in range(max(1, root // 2), 2 * root + 1) if length % d == 0]  # no padding needed
    chunk = chunk_size or min(divisors, key=lambda d: abs(d - root), default=root)
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:  # identity steps at the end: decay exp(0) = 1, input 0
        tail = inputs.new_zeros((batch, pad) + state_shape)
        log_decay = torch.cat([log_decay, tail.to(log_decay.dtype)], dim=1)
        inputs = torch.cat([inputs, tail], dim=1)
    chunked = (batch, n_chunks, chunk) + state_shape
    log_decay, inputs = log_decay.reshape(chunked), inputs.reshape(chunked)

    # unbind once: indexing one step at a time would make every step's backward write a full-size gradient
    decay_steps, input_steps = log_decay.exp().unbind(dim=2), inputs.unbind(dim=2)
    state = torch.zeros_like(input_steps[0])
    local = []
    for decay, step_input in zip(decay_steps, input_steps):
        state = decay * state + step_input
        local.append(state)
    local_states = torch.stack(local, dim=2)

    decay_since_chunk_start = log_decay.cumsum(dim=2).exp()
    carry = torch.zeros_like(state[:, 0])
    carries = []
    for chunk_decay, chunk_state in zip(decay_since_chunk_start[:, :, -1].unbind(dim=1), state.unbind(dim=1)):
        carries.append(carry)
        carry = chunk_decay * carry + chunk_state
    states = local_states + decay_since_chunk_start * torch.stack(carries, dim=1).unsqueeze(2)
    return states.reshape((batch, n_chunks * chunk) + state_shape)[:, :length]


class TimeAwareSSM(nn.Module):
    """S5-style SSM: x_k = exp(Λ Δ_k) x_{k-1} + ((exp(Λ Δ_k) - 1) / Λ) B u_k,  y_k = Re(C x_k) + D u_k,
    with diagonal complex Λ and Δ_k = base_step * step_scale_k (zero-order hold)."""

    def __init__(self, hidden: int, state_size: int, dt_min: float, dt_max: float):
        super().__init__()
        self.dt_min, self.dt_max = dt_min, dt_max
        self.log_neg_real = nn.Parameter(torch.empty(state_size))  # Re Λ = -exp(log_neg_real) < 0
        self.imag = nn.Parameter(torch.empty(state_size))  # Im Λ
        self.input_matrix = nn.Parameter(torch.empty(2, state_size, hidden))  # B: (real, imag)
        self.output_matrix = nn.Parameter(torch.empty(2, hidden, state_size))  # C: (real, imag)
        self.skip = nn.Parameter(torch.empty(hidden))  # D
        self.log_base_step = nn.Parameter(torch.empty(state_size))

    @torch.no_grad()
    def init_weights(self) -> None:
        state_size, hidden = self.input_matrix.shape[1:]
        # S4D-Lin: Λ_n = -1/2 + iπn, an approximation of S5's HiPPO-N eigenvalues
        self.log_neg_real.fill_(math.log(0.5))
        self.imag.copy_(math.pi * torch.arange(state_size, dtype=self.imag.dtype))
        nn.init.normal_(self.input_matrix, std=(2 * hidden) ** -0.5)
        nn.init.normal_(self.output_matrix, std=(2 * state_size) ** -0.5)
        nn.init.ones_(self.skip)
        nn.init.uniform_(self.log_base_step, math.log(self.dt_min), math.log(self.dt_max))

    def forward(self, u: Tensor, step_scale: Tensor) -> Tensor:
        """u[B, L, H], step_scale[B, L] (0 at padding) -> y[B, L, H]."""
        with torch.autocast(u.device.type, enabled=False):
            u = u.float()
            eigenvalues = torch.complex(-self.log_neg_real.exp(), self.imag)
            step = self.log_base_step.exp() * step_scale.float()[..., None]  # [B, L, P]
            log_decay = eigenvalues * step
            b_real, b_imag = self.input_matrix
            projected = torch.complex(u @ b_real.T, u @ b_imag.T)
            states = chunked_linear_scan(log_decay, torch.expm1(log_decay) / eigenvalues * projected)
            c_real, c_imag = self.output_matrix
            return states.real @ c_real.T - states.imag @ c_imag.T + self.skip * u


class SelectiveSSM(nn.Module):
    """Mamba (S6) block: in-projection to (x, gate), depthwise causal conv + SiLU, selective scan
    with input-dependent Δ, B, C and real diagonal A, gated by SiLU(gate), out-projection."""

    def __init__(self, hidden: int, state_size: int, conv_kernel: int, expand: int, dt_min: float, dt_max: float):
        super().__init__()
        inner = expand * hidden
        self.state_size, self.dt_rank = state_size, math.ceil(hidden / 16)
        self.dt_min, self.dt_max = dt_min, dt_max
        self.in_proj = nn.Linear(hidden, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, conv_kernel, groups=inner, padding=conv_kernel - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        self.log_neg_decay = nn.Parameter(torch.empty(inner, state_size))  # A = -exp(log_neg_decay)
        self.skip = nn.Parameter(torch.empty(inner))  # D
        self.out_proj = nn.Linear(inner, hidden, bias=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Mamba's initialisation: A_n = -n, Δ = softplus(bias) log-uniform in [dt_min, dt_max]."""
        inner = self.skip.numel()
        self.conv.reset_parameters()
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        dt = torch.empty(inner, device=self.skip.device).uniform_(math.log(self.dt_min), math.log(self.dt_max)).exp()
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        a = torch.arange(1, self.state_size + 1, dtype=torch.float32, device=self.skip.device)
        self.log_neg_decay.copy_(a.log().expand(inner, -1))
        nn.init.ones_(self.skip)

    def forward(self, x: Tensor, is_item: Tensor) -> Tensor:
        """x[B, L, H], is_item[B, L] -> [B, L, H]."""
        length = x.shape[1]
        u, gate = self.in_proj(x).chunk(2, dim=-1)
        u = u * is_item[..., None]  # padding feeds zeros into the convolution
        u = F.silu(self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2))
        dt_low, b, c = self.x_proj(u).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        with torch.autocast(x.device.type, enabled=False):
            u, b, c = u.float(), b.float(), c.float()
            step = F.softplus(self.dt_proj(dt_low.float())) * is_item[..., None]  # [B, L, E]
            y = selective_scan(u, step, -self.log_neg_decay.exp(), b, c) + self.skip * u
        return self.out_proj(y * F.silu(gate))


class SS4RecLayer(nn.Module):
    def __init__(self, cfg: SS4RecConfig):
        super().__init__()
        self.time_ssm = TimeAwareSSM(cfg.hidden, cfg.time_state_size, cfg.time_dt_min, cfg.time_dt_max)
        self.time_norm = nn.LayerNorm(cfg.hidden)
        self.relation_ssm = SelectiveSSM(
            cfg.hidden, cfg.state_size, cfg.conv_kernel, cfg.expand, cfg.dt_min, cfg.dt_max
        )
        self.relation_norm = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden, 4 * cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(4 * cfg.hidden, cfg.hidden),
        )
        self.ffn_norm = nn.LayerNorm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, step_scale: Tensor, is_item: Tensor) -> Tensor:
        x = self.time_norm(x + self.dropout(self.time_ssm(x, step_scale)))
        x = self.relation_norm(x + self.dropout(self.relation_ssm(x, is_item)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class SS4Rec(SequenceModel):  # train/ windows, a next-item loss over the tied item_emb (models/base.py)

    def __init__(self, cfg: SS4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.hidden, padding_idx=0)
        self.emb_norm = nn.LayerNorm(cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(SS4RecLayer(cfg) for _ in range(cfg.n_layers))

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every parameter from the global torch RNG (deterministic for a seed)."""
        init_dense_layers(self)
        for module in self.modules():  # after the generic pass, which touched their Linear children
            if isinstance(module, (TimeAwareSSM, SelectiveSSM)):
                module.init_weights()
        self.item_emb.weight[0].zero_()

    @staticmethod
    def encoder_flops(cfg: SS4RecConfig, tokens: int, length: int, fused_attention: bool) -> tuple[float, ...]:
        """Analytic FLOPs of one training step's encoder, as SASRec.encoder_flops; the scans' elementwise work is an
        estimate."""
        d, inner, state, time_state = cfg.hidden, cfg.expand * cfg.hidden, cfg.state_size, cfg.time_state_size
        rank, kernel = math.ceil(d / 16), cfg.conv_kernel
        weights = (4 * d * time_state
                   + 2 * d * inner + inner * (rank + 2 * state) + rank * inner + inner * d
                   + kernel * inner + inner * state
                   + 8 * d * d)
        scan_ops = 10 * inner * state + 40 * time_state  # per token per layer, forward
        return 6 * cfg.n_layers * weights * tokens, 0.0, 3 * cfg.n_layers * scan_ops * tokens

    def step_scale(self, timestamps: Tensor, is_item: Tensor, query_timestamps: Tensor | None) -> Tensor:
        """[B, L] multiplier of each position's SSM step: 1 + log1p(gap to the next timestamp / unit); 0 at padding."""
        last = timestamps[:, -1:] if query_timestamps is None else query_timestamps.reshape(-1, 1)
        following = torch.cat([timestamps[:, 1:], last.to(timestamps.dtype)], dim=1)
        gap_seconds = (following - timestamps).clamp(min=0).float()  # subtract in int64: float32 epochs lose seconds
        return (1.0 + torch.log1p(gap_seconds / self.cfg.time_unit_seconds)) * is_item

    def forward(self, items: Tensor, timestamps: Tensor, query_timestamps: Tensor | None = None) -> Tensor:
        """items, timestamps [B, L] (left-padded, seconds) -> hidden[B, L, D], 0 at padded positions."""
        if items.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds max_len {self.cfg.max_len}")
        is_item = items != 0
        step_scale = self.step_scale(timestamps, is_item, query_timestamps)
        x = self.emb_dropout(self.emb_norm(self.item_emb(items)))
        for layer in self.layers:
            x = layer(x, step_scale, is_item)
        return x * is_item[..., None]
