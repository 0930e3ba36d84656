"""Generate the attention golden fixture for rlhf.h tests.

Causal self-attention with document starts, written directly in PyTorch in
float64: for row b, head h and query t, the keys j with doc[b,t] <= j <= t,
    att = softmax(q_t . k_j / sqrt(hs)),  out_t = sum_j att_j v_j,
and the gradient of sum(out * dout) with respect to qkv. The cases have heads
of 16 and 64 channels (rlhf.h computes those in tiles: rlhf__attention_forward
_tiled), blocks of query rows that end inside the context, rows whose keys
start at different documents (in order, and in none), a context longer than
256 keys, heads of 48 and 256 channels, and a head of 32 channels over more
than 256 keys (with AVX-512, two 16-channel tiles at once across two slices of
keys).

The inputs are not stored: both sides make them from the element index i and
a salt with integer arithmetic, so they are exact in float32:
    val(i, salt) = (((i * 2654435761 + salt * 40503) mod 2^32) mod 1001 - 500) / 256
qkv (B,T,3C) uses salt 1, dout (B,T,C) salt 2.

Run from the repo root:
    /usr/bin/python3 tools/gen_attention_golden.py [output_path]
output_path defaults to tests/fixtures/attention_golden.bin under the repo root.

Fixture format: tools/gen_golden.py's (RLHFFIX1). Records, for each case n:
    caseN.config i32[4] = [B, T, C, NH]; caseN.doc i32[B,T] (first key of each
    token); caseN.out f32[B,T,C]; caseN.dqkv f32[B,T,3C].
"""
import os
import sys

import numpy as np
import torch

from gen_golden import write_fixture  # the RLHFFIX1 writer the other fixtures use

DT = torch.float64


def val(n, salt):
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(salt * 40503)) & np.uint64(0xFFFFFFFF)
    return ((h % np.uint64(1001)).astype(np.int64) - 500).astype(np.float64) / 256.0


def docs(B, T, kind):
    d = np.zeros((B, T), np.int32)
    if kind == "packed":  # row 0: left padding of 3 (each pad its own document); row 1: documents [0,11) [11,T)
        for t in range(T):
            d[0, t] = t if t < 3 else 3
            d[1, t] = 0 if t < 11 else 11
    if kind == "any":  # starts in no order: even tokens see only themselves, odd ones every key before them
        for t in range(T):
            d[0, t] = t if t % 2 == 0 else 0
    return d


def attention(qkv, doc, NH):
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // NH
    q, k, v = qkv.split(C, dim=2)
    heads = lambda x: x.view(B, T, NH, hs).transpose(1, 2)  # [B,NH,T,hs]
    q, k, v = heads(q), heads(k), heads(v)
    t = torch.arange(T)
    d = torch.as_tensor(doc, dtype=torch.int64)
    allowed = (t[None, None, :] <= t[None, :, None]) & (t[None, None, :] >= d[:, :, None])  # [B,Tq,Tk]
    s = (q @ k.transpose(-1, -2)) / hs ** 0.5
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    return (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)


def case(B, T, C, NH, kind):
    qkv = torch.tensor(val(B * T * 3 * C, 1).reshape(B, T, 3 * C), dtype=DT, requires_grad=True)
    dout = torch.tensor(val(B * T * C, 2).reshape(B, T, C), dtype=DT)
    doc = docs(B, T, kind)
    out = attention(qkv, doc, NH)
    (out * dout).sum().backward()
    return doc, out.detach().numpy(), qkv.grad.numpy()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "attention_golden.bin")
    cases = [(2, 31, 32, 2, "packed"),  # hs 16: a block of 7 rows at the end, rows with their own documents
             (1, 271, 16, 1, "none"),   # hs 16: 271 keys, more than one 256-key slice of a tile
             (1, 30, 64, 1, "none"),    # hs 64 (GPT-2's)
             (1, 25, 96, 2, "any"),     # hs 48: a last block of one row; document starts in no order
             (1, 7, 256, 1, "none"),    # hs 256: the largest tiled head (a packed panel of K^T fills its buffer)
             (1, 283, 32, 1, "any")]    # hs 32 over 283 keys: pairs of tiles (full rows) across two 256-key slices
    records = []
    for n, (B, T, C, NH, kind) in enumerate(cases):
        doc, out, dqkv = case(B, T, C, NH, kind)
        records += [(f"case{n}.config", np.array([B, T, C, NH], np.int32)), (f"case{n}.doc", doc),
                    (f"case{n}.out", out.astype(np.float32)), (f"case{n}.dqkv", dqkv.astype(np.float32))]
    write_fixture(path, records)
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
