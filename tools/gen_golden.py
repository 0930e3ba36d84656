"""Generate the GPT-2 golden fixture for rlhf.h tests.

An independent, tiny GPT-2 written directly in PyTorch (no HF transformers),
numerically identical to Hugging Face GPT2LMHeadModel (Conv1D layout, tied
head, LayerNorm eps 1e-5, tanh GELU, no dropout). Everything runs in float64.
It records: logits and loss for a random batch, the gradient of the loss w.r.t.
every parameter, and the trajectory of 10 AdamW steps (nanoGPT weight-decay
groups, grad-norm clipping at 0.5) on that same batch.

Run from the repo root:
    /usr/bin/python3 tools/gen_golden.py [output_path]
output_path defaults to tests/fixtures/gpt2_golden.bin under the repo root.

Fixture format (little-endian):
    8 bytes magic b"RLHFFIX1", u32 record count, then per record:
    u32 name_len, name (ASCII, no NUL), u32 dtype (0=float32, 1=int32),
    u32 ndim, ndim x u32 dims, prod(dims) elements (scalar: ndim 0, 1 element).
    Float values are the float64 results rounded to float32.
Records in order: config i32[9] = [V,maxT,L,NH,C,B,T,0,0];
    adamw f32[6] = [lr,beta1,beta2,eps,weight_decay,max_grad_norm];
    inputs i32[B,T]; targets i32[B,T] (-1 = ignored);
    every parameter by its HF name (wte.weight, wpe.weight, h.{i}.*, ln_f.*);
    logits f32[B,T,V]; loss f32 scalar; "grad."+name for every parameter;
    steps.loss f32[10] (loss before each update); steps.grad_norm f32[10]
    (pre-clip total norm); "final."+name for every parameter after 10 steps.
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

V, MAXT, L, NH, C, B, T = 53, 16, 2, 2, 24, 3, 7
HS = C // NH
LR, BETAS, EPS, WD, MAX_NORM, NSTEPS = 1e-2, (0.9, 0.95), 1e-8, 0.1, 0.5, 10
DT = torch.float64


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
    return [(k, v.requires_grad_()) for k, v in p]


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(x, w, b):
    """Causal multi-head attention core (before c_proj). x: [B,T,C] -> [B,T,C]."""
    Bx, Tx, _ = x.shape
    q, k, v = (x @ w + b).split(C, dim=-1)
    heads = lambda t: t.view(Bx, Tx, NH, HS).transpose(1, 2)  # [B,NH,T,hs]
    q, k, v = heads(q), heads(k), heads(v)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
    mask = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return (att @ v).transpose(1, 2).reshape(Bx, Tx, C)


def forward(P, idx, targets=None):
    ln = lambda x, n: F.layer_norm(x, (C,), P[n + ".weight"], P[n + ".bias"], eps=1e-5)
    x = P["wte.weight"][idx] + P["wpe.weight"][: idx.shape[1]]
    for i in range(L):
        h = f"h.{i}."
        a = attention(ln(x, h + "ln_1"), P[h + "attn.c_attn.weight"], P[h + "attn.c_attn.bias"])
        x = x + a @ P[h + "attn.c_proj.weight"] + P[h + "attn.c_proj.bias"]
        m = gelu_tanh(ln(x, h + "ln_2") @ P[h + "mlp.c_fc.weight"] + P[h + "mlp.c_fc.bias"])
        x = x + m @ P[h + "mlp.c_proj.weight"] + P[h + "mlp.c_proj.bias"]
    logits = ln(x, "ln_f") @ P["wte.weight"].T
    loss = None if targets is None else F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
    return logits, loss


def sanity_checks():
    """Explicit-loop attention for one position, and GELU vs torch's builtin."""
    x, w, b = torch.randn(2, T, C, dtype=DT), torch.randn(C, 3 * C, dtype=DT) * 0.3, torch.randn(3 * C, dtype=DT)
    ref = attention(x, w, b)
    bi, t = 1, 4
    xl, wl, bl = x[bi].tolist(), w.tolist(), b.tolist()  # plain Python floats
    qkv = [[sum(xl[s][c] * wl[c][j] for c in range(C)) + bl[j] for j in range(3 * C)] for s in range(T)]
    out = []
    for hd in range(NH):
        o = hd * HS
        sc = [sum(qkv[t][o + d] * qkv[s][C + o + d] for d in range(HS)) / math.sqrt(HS) for s in range(t + 1)]
        mx = max(sc); e = [math.exp(z - mx) for z in sc]; Z = sum(e)
        out += [sum(e[s] / Z * qkv[s][2 * C + o + d] for s in range(t + 1)) for d in range(HS)]
    err = (ref[bi, t] - torch.tensor(out, dtype=DT)).abs().max().item()
    print(f"attention vs explicit loop: max abs err {err:.3e}")
    assert err < 1e-12
    z = torch.linspace(-6, 6, 1001, dtype=DT)
    try:
        gerr = (gelu_tanh(z) - F.gelu(z, approximate="tanh")).abs().max().item()
        print(f"gelu_tanh vs F.gelu(approximate='tanh'): max abs err {gerr:.3e}")
        assert gerr < 1e-12
    except TypeError:
        print("F.gelu has no approximate= in this torch; GELU check skipped")


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
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "gpt2_golden.bin")
    torch.manual_seed(1234)
    sanity_checks()
    plist = make_params()
    P = dict(plist)
    idx = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    ign = torch.rand(B, T) < 0.25
    for r in range(B):  # each row: at least one ignored and at least one valid target
        if not ign[r].any():
            ign[r, torch.randint(0, T, ()).item()] = True
        if ign[r].all():
            ign[r, 0] = False
    tgt[ign] = -1
    f32 = lambda t: t.detach().to(torch.float32).numpy()
    i32 = lambda t: t.to(torch.int32).numpy()
    rec = [("config", np.array([V, MAXT, L, NH, C, B, T, 0, 0], np.int32)),
           ("adamw", np.array([LR, *BETAS, EPS, WD, MAX_NORM], np.float32)),
           ("inputs", i32(idx)), ("targets", i32(tgt))]
    rec += [(k, f32(v)) for k, v in plist]
    logits, loss = forward(P, idx, tgt)
    loss.backward()
    rec += [("logits", f32(logits)), ("loss", f32(loss))]
    rec += [("grad." + k, f32(v.grad)) for k, v in plist]
    print(f"targets:\n{tgt}\nloss = {loss.item():.10f}")

    params = [v for _, v in plist]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": WD},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses, norms = [], []
    for step in range(NSTEPS):
        opt.zero_grad()
        _, l = forward(P, idx, tgt)
        l.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, max_norm=MAX_NORM)
        opt.step()
        losses.append(l.item()); norms.append(gn.item())
        print(f"step {step}: loss {l.item():.8f}  grad_norm {gn.item():.6f}{'  (clipped)' if gn > MAX_NORM else ''}")
    nclip = sum(g > MAX_NORM for g in norms)
    print(f"clipping active in {nclip}/{NSTEPS} steps" + ("" if nclip > NSTEPS // 2 else "  WARNING: not most steps"))
    rec += [("steps.loss", np.array(losses, np.float32)), ("steps.grad_norm", np.array(norms, np.float32))]
    rec += [("final." + k, f32(v)) for k, v in plist]

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_fixture(path, rec)
    back = read_fixture(path)  # self-check: parse and compare every record bit-exactly
    assert [n for n, _ in back] == [n for n, _ in rec]
    for (n, a), (_, b) in zip(rec, back):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), n
    print(f"wrote {path}: {len(rec)} records, {os.path.getsize(path)} bytes; read-back OK")


if __name__ == "__main__":
    main()
