"""PyTorch beside rlhf.h in `make bench`: the same GPT-2 training step on the same
weights and batch, timed on request so that tools/bench.c can interleave it with
its own steps. A yardstick, never a dependency: without torch it says so and exits.

    /usr/bin/python3 tools/bench_torch.py build/bench_torch_S.bin THREADS

The file (written by tools/bench.c, host byte order) is the fixture format of
tools/gen_golden.py: b"RLHFFIX1", u32 record count, then per record u32 name
length, the name, u32 dtype (0 float32, 1 int32), u32 ndim, the dims, the data.
Records: config i32[7] = [V, n_ctx, L, NH, C, B, T]; adamw f32[6] = [lr, beta1,
beta2, eps, weight_decay, grad_clip]; inputs, targets i32[B,T]; decay i32[n]
(1: AdamW decays tensor i); then every parameter under its Hugging Face name.

Protocol on stdin/stdout, one line each way: it prints "ready <description>" (or
"skip <reason>" and exits: no torch, or torch on the reference BLAS, unless
RLHF_BENCH_TORCH_ANY_BLAS=1); to "step N" it runs N training steps and prints
"<best seconds> <mean seconds> <loss of the first> <loss of the last>"; "quit" ends.

The step is rlhf_model_train_step's: forward (GPT-2 as Hugging Face's GPT2LMHeadModel:
Conv1D weights (in, out), tanh GELU, LayerNorm eps 1e-5, the LM head tied to wte),
mean cross-entropy, backward, gradient clipping to a global norm, AdamW with weight
decay on the tensors the file marks. float32 throughout, like rlhf.h."""
import math
import os
import struct
import sys
import time


def read_records(path):
    data = open(path, "rb").read()
    assert data[:8] == b"RLHFFIX1", "not a bench file"
    (count,), off, out = struct.unpack_from("=I", data, 8), 12, []
    for _ in range(count):
        (nl,) = struct.unpack_from("=I", data, off)
        off += 4
        name = data[off:off + nl].decode("ascii")
        off += nl
        code, nd = struct.unpack_from("=II", data, off)
        off += 8
        dims = struct.unpack_from(f"={nd}I", data, off)
        off += 4 * nd
        n = 1
        for d in dims:
            n *= d
        out.append((name, "i" if code == 1 else "f", dims, data[off:off + 4 * n]))
        off += 4 * n
    return out


def blas_library(torch):
    """The BLAS that torch's matmuls run in, from the libraries mapped into this process
    after one matmul. Debian's torch takes whatever libblas.so.3 points to: OpenBLAS
    when installed, else the reference BLAS (netlib), 10-100x slower, no yardstick."""
    torch.ones(8, 8) @ torch.ones(8, 8)
    try:
        libs = {line.split()[-1] for line in open("/proc/self/maps") if "blas" in line.split()[-1].lower()}
    except OSError:
        return "unknown"
    names = sorted(os.path.realpath(p) for p in libs)
    if not names:
        return "unknown"
    if not any("openblas" in n or "mkl" in n or "blis" in n for n in names):
        return f"{names[0]} (the reference BLAS)"
    return ", ".join(names)


def main():
    path, threads = sys.argv[1], sys.argv[2]
    # before torch loads OpenBLAS: its thread count, and threads that sleep between calls
    # (spinning ones would take the CPUs from rlhf.h's steps, interleaved with these)
    os.environ["OMP_NUM_THREADS"] = threads
    os.environ["OPENBLAS_NUM_THREADS"] = threads
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"skip no torch in {sys.executable} ({e})", flush=True)
        return
    torch.set_num_threads(int(threads))
    recs = read_records(path)

    def tensor(kind, dims, raw):
        t = torch.frombuffer(bytearray(raw), dtype=torch.int32 if kind == "i" else torch.float32)
        return t.reshape(dims) if dims else t

    named = [(n, tensor(k, d, r)) for n, k, d, r in recs]
    cfg, opt = named[0][1].tolist(), named[1][1].tolist()
    V, _, L, NH, C, B, T = cfg
    lr, beta1, beta2, eps, wd, clip = opt
    x, y, decay = named[2][1].long(), named[3][1].long(), named[4][1].tolist()
    P = {n: t.clone().requires_grad_() for n, t in named[5:]}
    names = [n for n, _ in named[5:]]
    groups = [{"params": [P[n] for n, d in zip(names, decay) if d], "weight_decay": wd},
              {"params": [P[n] for n, d in zip(names, decay) if not d], "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps)
    hs = C // NH
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def ln(v, n):
        return F.layer_norm(v, (C,), P[n + ".weight"], P[n + ".bias"], eps=1e-5)

    def attention(v, w, b):
        q, k, vv = (v @ w + b).split(C, dim=-1)
        q, k, vv = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, vv))
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(hs)).masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return (att @ vv).transpose(1, 2).reshape(B, T, C)

    def loss_fn():
        h = P["wte.weight"][x] + P["wpe.weight"][:T]
        for i in range(L):
            p = f"h.{i}."
            h = h + attention(ln(h, p + "ln_1"), P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"]) \
                @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
            m = F.gelu(ln(h, p + "ln_2") @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"], approximate="tanh")
            h = h + m @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
        logits = ln(h, "ln_f") @ P["wte.weight"].T
        return F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-1)

    def step():
        adamw.zero_grad(set_to_none=False)
        loss = loss_fn()
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(list(P.values()), clip)
        adamw.step()
        return loss.item()

    blas = blas_library(torch)
    if blas.endswith("(the reference BLAS)") and os.environ.get("RLHF_BENCH_TORCH_ANY_BLAS") != "1":
        print(f"skip torch {torch.__version__} runs its matmuls in {blas}, 10-100x slower than OpenBLAS: "
              "no yardstick (install libopenblas0, or set RLHF_BENCH_TORCH_ANY_BLAS=1 to time it anyway)", flush=True)
        return
    print(f"ready torch {torch.__version__}, {torch.get_num_threads()} thread(s), BLAS {blas}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        n, best, total, losses = int(words[1]), float("inf"), 0.0, []
        for _ in range(n):
            t0 = time.perf_counter()
            losses.append(step())
            t = time.perf_counter() - t0
            best, total = min(best, t), total + t
        print(f"{best:.6f} {total / n:.6f} {losses[0]:.6f} {losses[-1]:.6f}", flush=True)


if __name__ == "__main__":
    main()
