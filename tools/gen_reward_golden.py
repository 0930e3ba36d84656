"""Generate the reward-model / doc_start golden fixture for rlhf.h tests.

An independent, tiny GPT-2 written directly in PyTorch (no HF transformers),
numerically identical to Hugging Face GPT2 (Conv1D weights stored [in,out],
tied LM head = wte, LayerNorm eps 1e-5, tanh GELU, no dropout), extended with:
  * doc_start masking: int array (B,T). Token t of row b attends to keys j with
    doc_start[b,t] <= j <= t and uses position id t - doc_start[b,t]. This
    expresses left padding (each pad token is its own document) and packing.
  * a scalar head: values[b,t] = ln_f(h[b,t]) . score.weight[0] + score.bias[0]
    (HF GPT2ForSequenceClassification's score Linear with num_labels=1, plus a bias).
Everything runs in float64; records are written as float32 / int32.

Run from the repo root:
    /usr/bin/python3 tools/gen_reward_golden.py [output_path]
output_path defaults to tests/fixtures/reward_golden.bin under the repo root.

Fixture format (little-endian), same as tools/gen_golden.py:
    8 bytes magic b"RLHFFIX1", u32 record count, then per record:
    u32 name_len, name (ASCII, no NUL), u32 dtype (0=float32, 1=int32),
    u32 ndim, ndim x u32 dims, prod(dims) elements (scalar: ndim 0, 1 element).
Records in order:
    config i32[9] = [V,maxT,L,NH,C,B,T,0,0]; inputs i32[B,T]; doc_start i32[B,T];
    last i32[B] (position whose value is the sequence reward);
    every parameter by HF name (wte.weight, wpe.weight, h.{i}.*, ln_f.*,
    score.weight [1,C], score.bias [1]);
  Part A (scalar head):
    wv f32[B,T] (fixed random weights); values f32[B,T]; rewards f32[B] = values[b,last[b]];
    rank_loss f32 = -1/C(B,2) * sum_{i<j} logsigmoid(r_i - r_j)  (rows listed best first);
    rank_grad f32[B] = d rank_loss / d rewards;
    loss_a f32 = rank_loss + sum(wv * values); "grad_a."+name for every parameter.
  Part B (tied LM head, same doc_start):
    lm.targets i32[B,T] (next token of the same document, else -1);
    lm.logits f32[B,T,V]; lm.loss f32 = mean CE over targets != -1;
    "grad_b."+name for every parameter except score.* (not on the LM path).
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

V, MAXT, L, NH, C, B, T = 53, 16, 2, 2, 24, 4, 9
HS = C // NH
DT = torch.float64
LAST = [8, 8, 8, 5]


def make_params():
    """Return an ordered list of (HF name, float64 leaf tensor)."""
    n = lambda *shape, std: torch.randn(*shape, dtype=DT) * std
    p = [("wte.weight", n(V, C, std=0.15)), ("wpe.weight", n(MAXT, C, std=0.15))]
    for i in range(L):
        h = f"h.{i}."
        p += [(h + "ln_1.weight", 1 + n(C, std=0.1)), (h + "ln_1.bias", n(C, std=0.05)),
              (h + "attn.c_attn.weight", n(C, 3 * C, std=0.15)), (h + "attn.c_attn.bias", n(3 * C, std=0.05)),
              (h + "attn.c_proj.weight", n(C, C, std=0.15)), (h + "attn.c_proj.bias", n(C, std=0.05)),
              (h + "ln_2.weight", 1 + n(C, std=0.1)), (h + "ln_2.bias", n(C, std=0.05)),
              (h + "mlp.c_fc.weight", n(C, 4 * C, std=0.15)), (h + "mlp.c_fc.bias", n(4 * C, std=0.05)),
              (h + "mlp.c_proj.weight", n(4 * C, C, std=0.15)), (h + "mlp.c_proj.bias", n(C, std=0.05))]
    p += [("ln_f.weight", 1 + n(C, std=0.1)), ("ln_f.bias", n(C, std=0.05))]
    p += [("score.weight", n(1, C, std=0.3)), ("score.bias", torch.full((1,), 0.1, dtype=DT))]
    return [(k, v.requires_grad_()) for k, v in p]


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def doc_mask(ds):
    """allowed[b,t,j] = ds[b,t] <= j <= t, built by explicit loops (no vectorised tricks)."""
    Bx, Tx = ds.shape
    m = torch.zeros(Bx, Tx, Tx, dtype=torch.bool)
    for b in range(Bx):
        for t in range(Tx):
            for j in range(Tx):
                m[b, t, j] = int(ds[b, t]) <= j <= t
    return m


def attention(x, w, b, allowed):
    """Masked multi-head attention core (before c_proj). x: [B,T,C], allowed: [B,T,T] bool."""
    Bx, Tx, _ = x.shape
    q, k, v = (x @ w + b).split(C, dim=-1)
    heads = lambda t: t.view(Bx, Tx, NH, HS).transpose(1, 2)  # [B,NH,T,hs]
    q, k, v = heads(q), heads(k), heads(v)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)            # scores q.k / sqrt(hs)
    att = att.masked_fill(~allowed[:, None], float("-inf")).softmax(dim=-1)
    return (att @ v).transpose(1, 2).reshape(Bx, Tx, C)


def forward(P, idx, ds=None):
    """Return (values [B,T], logits [B,T,V]). ds=None: plain causal, positions 0..T-1."""
    Bx, Tx = idx.shape
    if ds is None:
        allowed = torch.ones(Tx, Tx, dtype=torch.bool).tril().expand(Bx, Tx, Tx)
        pos = torch.arange(Tx).expand(Bx, Tx)
    else:
        allowed = doc_mask(ds)
        pos = torch.arange(Tx)[None, :] - ds                   # position id = t - doc_start[b,t]
    ln = lambda x, n: F.layer_norm(x, (C,), P[n + ".weight"], P[n + ".bias"], eps=1e-5)
    x = P["wte.weight"][idx] + P["wpe.weight"][pos]
    for i in range(L):
        h = f"h.{i}."
        a = attention(ln(x, h + "ln_1"), P[h + "attn.c_attn.weight"], P[h + "attn.c_attn.bias"], allowed)
        x = x + a @ P[h + "attn.c_proj.weight"] + P[h + "attn.c_proj.bias"]
        m = gelu_tanh(ln(x, h + "ln_2") @ P[h + "mlp.c_fc.weight"] + P[h + "mlp.c_fc.bias"])
        x = x + m @ P[h + "mlp.c_proj.weight"] + P[h + "mlp.c_proj.bias"]
    hf = ln(x, "ln_f")
    values = hf @ P["score.weight"][0] + P["score.bias"][0]   # scalar head
    logits = hf @ P["wte.weight"].T                              # tied LM head
    return values, logits


def rank_loss_fn(r):
    """-1/C(K,2) * sum_{i<j} logsigmoid(r_i - r_j); r listed best first."""
    K = r.shape[0]
    pairs = [F.logsigmoid(r[i] - r[j]) for i in range(K) for j in range(i + 1, K)]
    return -torch.stack(pairs).sum() / math.comb(K, 2)


def write_fixture(path, records):
    with open(path, "wb") as f:
        f.write(b"RLHFFIX1" + struct.pack("<I", len(records)))
        for name, arr in records:
            arr = np.asarray(arr)  # not ascontiguousarray: it turns 0-d into 1-d
            code = 1 if arr.dtype == np.int32 else 0
            assert arr.dtype in (np.int32, np.float32)
            nb = name.encode("ascii")
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<II", code, arr.ndim))
            f.write(struct.pack(f"<{arr.ndim}I", *arr.shape))
            f.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C"))


def read_fixture(path):
    data = open(path, "rb").read()
    assert data[:8] == b"RLHFFIX1"
    (count,), off, out = struct.unpack_from("<I", data, 8), 12, []
    for _ in range(count):
        (nl,) = struct.unpack_from("<I", data, off); off += 4
        name = data[off:off + nl].decode("ascii"); off += nl
        code, nd = struct.unpack_from("<II", data, off); off += 8
        dims = struct.unpack_from(f"<{nd}I", data, off); off += 4 * nd
        dt = np.dtype("<i4") if code == 1 else np.dtype("<f4")
        n = int(np.prod(dims))  # prod(()) == 1 for scalars
        out.append((name, np.frombuffer(data, dt, n, off).reshape(dims))); off += 4 * n
    assert off == len(data), "trailing bytes"
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "reward_golden.bin")
    torch.manual_seed(20240607)
    plist = make_params()
    P = dict(plist)
    idx = torch.randint(0, V, (B, T))
    wv = torch.randn(B, T, dtype=DT)
    t = torch.arange(T)
    ds = torch.stack([torch.zeros(T, dtype=torch.long),          # row 0: plain causal
                      torch.where(t < 3, t, torch.tensor(3)),    # row 1: left padding P=3
                      torch.where(t < 4, torch.tensor(0), torch.tensor(4)),  # row 2: packed docs [0,4) [4,9)
                      torch.zeros(T, dtype=torch.long)])         # row 3: right-padded, real length 6
    last = torch.tensor(LAST)
    f32 = lambda x: x.detach().to(torch.float32).numpy()
    i32 = lambda x: x.to(torch.int32).numpy()
    rec = [("config", np.array([V, MAXT, L, NH, C, B, T, 0, 0], np.int32)),
           ("inputs", i32(idx)), ("doc_start", i32(ds)), ("last", i32(last))]
    rec += [(k, f32(v)) for k, v in plist]
    params = [v for _, v in plist]

    # ---- Part A: scalar head, ranking loss + weighted sum of all values ----
    values, logits = forward(P, idx, ds)
    rewards = values[torch.arange(B), last]                      # r_b = values[b, last[b]]
    rank_loss = rank_loss_fn(rewards)
    loss_a = rank_loss + (wv * values).sum()
    (rank_grad,) = torch.autograd.grad(rank_loss, rewards, retain_graph=True)
    # closed form: dL/dr_k = -1/C(K,2) * (sum_{j>k} sig(r_j - r_k) - sum_{i<k} sig(r_k - r_i))
    r = rewards.detach()
    cf = torch.stack([sum(torch.sigmoid(r[j] - r[k]) for j in range(k + 1, B))
                      - sum(torch.sigmoid(r[k] - r[i]) for i in range(k)) for k in range(B)]) * (-1 / math.comb(B, 2))
    assert (cf - rank_grad).abs().max() < 1e-14
    grads_a = torch.autograd.grad(loss_a, params, retain_graph=True)
    rec += [("wv", f32(wv)), ("values", f32(values)), ("rewards", f32(rewards)),
            ("rank_loss", f32(rank_loss)), ("rank_grad", f32(rank_grad)), ("loss_a", f32(loss_a))]
    rec += [("grad_a." + k, f32(g)) for (k, _), g in zip(plist, grads_a)]

    # ---- Part B: LM loss with the same doc_start ----
    tgt = torch.full((B, T), -1, dtype=torch.long)
    for b in range(B):
        for s in range(T - 1):  # target = next token if it belongs to the same document
            if ds[b, s + 1] == ds[b, s]:
                tgt[b, s] = idx[b, s + 1]
    tgt[1, :3] = -1   # row 1 pad tokens (already -1: each pad is its own document)
    tgt[3, 5:] = -1   # row 3 beyond real length 6 (position 5 would predict a pad)
    lm_loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=-1)  # mean over valid
    lm_names = [(k, v) for k, v in plist if not k.startswith("score.")]
    grads_b = torch.autograd.grad(lm_loss, [v for _, v in lm_names])
    rec += [("lm.targets", i32(tgt)), ("lm.logits", f32(logits)), ("lm.loss", f32(lm_loss))]
    rec += [("grad_b." + k, f32(g)) for (k, _), g in zip(lm_names, grads_b)]

    # ---- Self-check: doc_start segments == the same tokens run alone, plain causal ----
    with torch.no_grad():
        for b, lo, hi in [(1, 3, T), (2, 0, 4), (2, 4, T), (0, 0, T)]:
            v1, l1 = forward(P, idx[b:b + 1, lo:hi])
            ev = (v1[0] - values[b, lo:hi]).abs().max().item()
            el = (l1[0] - logits[b, lo:hi]).abs().max().item()
            print(f"row {b} tokens [{lo}:{hi}] alone vs doc_start batch: values err {ev:.1e}, logits err {el:.1e}")
            assert ev < 1e-12 and el < 1e-12
        # row 1 pad tokens: each is a lone document at position 0
        for s in range(3):
            v1, _ = forward(P, idx[1:2, s:s + 1])
            assert (v1[0, 0] - values[1, s]).abs() < 1e-12

    print(f"doc_start:\n{ds}\nlm.targets:\n{tgt}")
    print(f"rewards = {r.tolist()}")
    print(f"rank_loss = {rank_loss.item():.10f}  rank_grad = {rank_grad.tolist()}")
    print(f"loss_a = {loss_a.item():.10f}  lm.loss = {lm_loss.item():.10f}")

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_fixture(path, rec)
    back = read_fixture(path)  # self-check: parse and compare every record bit-exactly
    assert [n for n, _ in back] == [n for n, _ in rec]
    for (n, a), (_, b) in zip(rec, back):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), n
    print(f"wrote {path}: {len(rec)} records, {os.path.getsize(path)} bytes; read-back OK")


if __name__ == "__main__":
    main()
