"""The selective scan of Mamba (S6) with its own backward: y = C·h, h[t] = exp(Δ[t] A) h[t-1] + Δ[t] u[t] B[t].

Shapes: u, delta [batch, length, E]; A [E, N]; B, C [batch, length, N] -> y [batch, length, E]. The states
h are [batch, length, E, N]: 4,096 numbers per token at SS4Rec's default size (E = 2 x 64, N = 32), 420 MB per layer
at batch 128 x length 200. Autograd through a pure-torch scan keeps several tensors of that size per layer and walks
them many times; here no state outlives its chunk of `chunk` time steps:

- forward, chunk by chunk (time-major, so each step of the recurrence is one contiguous `addcmul_`): the chunk's
  decays exp(Δ A) and inputs Δ u B, the recurrence, the readout C·h; only the state entering each chunk is kept;
- backward, chunks in reverse: the chunk's states are recomputed from the kept state, the adjoint
  g[t] = C[t] dy[t] + exp(Δ[t+1] A) g[t+1] runs backwards, and every gradient is a contraction of g with what the
  forward had (g·B, g·Δu, g·h[t-1]·exp(ΔA)·A, ...).

Memory is a few chunk-sized buffers (chunk x batch x E x N floats) plus one state per chunk; the work is about 21
passes over the states for forward and backward together. Everything runs in float32.
"""
from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 8  # time steps whose states exist at once


class SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int = CHUNK) -> Tensor:
        u_t, delta_t, B_t, C_t = (x.transpose(0, 1).contiguous() for x in (u, delta, B, C))  # time-major
        length, batch, inner = u_t.shape
        h = u_t.new_zeros(batch, inner, A.shape[1])
        entering, ys = [], []
        for start in range(0, length, chunk):
            part = slice(start, start + chunk)
            entering.append(h)
            decay, states = _chunk_states(u_t[part], delta_t[part], A, B_t[part], h)
            ys.append(torch.matmul(states, C_t[part].unsqueeze(-1)).squeeze(-1))
            h = states[-1].clone()
            del decay, states
        ctx.save_for_backward(u_t, delta_t, A, B_t, C_t, torch.stack(entering))
        ctx.chunk = chunk
        return torch.cat(ys).transpose(0, 1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        u_t, delta_t, A, B_t, C_t, entering = ctx.saved_tensors
        chunk = ctx.chunk
        dy_t = dy.transpose(0, 1).contiguous().to(u_t.dtype)
        length = u_t.shape[0]
        du, ddelta = torch.empty_like(u_t), torch.empty_like(delta_t)
        dB, dC = torch.empty_like(B_t), torch.empty_like(C_t)
        dA = torch.zeros_like(A)
        carry = None  # exp(Δ A) g of the first step of the chunk after this one
        starts = list(range(0, length, chunk))
        for index in reversed(range(len(starts))):
            part = slice(starts[index], starts[index] + chunk)
            h0 = entering[index]
            delta_c, B_c, C_c = delta_t[part], B_t[part], C_t[part]
            du_in = delta_c * u_t[part]  # Δ u
            decay, states = _chunk_states(u_t[part], delta_c, A, B_c, h0)
            dC[part] = torch.matmul(dy_t[part].unsqueeze(-2), states).squeeze(-2)
            # adjoint of the states, backwards through the chunk
            g = dy_t[part].unsqueeze(-1) * C_c.unsqueeze(-2)
            if carry is not None:
                g[-1] += carry
            for t in range(g.shape[0] - 2, -1, -1):
                g[t].addcmul_(decay[t + 1], g[t + 1])
            carry = decay[0] * g[0]
            # through the inputs Δ u B
            d_du = torch.matmul(g, B_c.unsqueeze(-1)).squeeze(-1)
            dB[part] = torch.matmul(du_in.unsqueeze(-2), g).squeeze(-2)
            # through the decays exp(Δ A): dZ = g * h[t-1] * exp(Δ A) with Z = Δ A, in place in g
            g[1:].mul_(states[:-1])
            g[0].mul_(h0)
            g.mul_(decay)
            del states, decay
            ddelta_c = (g * A).sum(-1)
            dA += g.mul_(delta_c.unsqueeze(-1)).sum(dim=(0, 1))
            du[part] = d_du * delta_c
            ddelta[part] = ddelta_c + d_du * u_t[part]
        return (du.transpose(0, 1), ddelta.transpose(0, 1), dA, dB.transpose(0, 1), dC.transpose(0, 1), None)


def _chunk_states(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """(decays exp(Δ A), states h) of one chunk, [c, batch, E, N] each, from the state h0 entering it."""
    decay = torch.mul(delta.unsqueeze(-1), A).exp_()
    states = torch.mul((delta * u).unsqueeze(-1), B.unsqueeze(-2))
    states[0].addcmul_(decay[0], h0)
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])
    return decay, states


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int = CHUNK) -> Tensor:
    """y[b, t, e] = sum_n C[b, t, n] h[b, t, e, n], h as in the module docstring, h[-1] = 0. float32."""
    return SelectiveScan.apply(u.float(), delta.float(), A.float(), B.float(), C.float(), chunk)
