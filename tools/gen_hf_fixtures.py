"""Generate Hugging Face-style safetensors fixtures for rlhf.h's checkpoint loader.

Uses its own minimal safetensors writer and reader (no `safetensors` or
`transformers` package), so the files are an independent check of rlhf.h.
One tiny GPT-2 (V=61, n_positions=12, C=16, L=2, NH=2; torch.manual_seed(7))
is written under tests/fixtures/hf/ as:
  pretrained/config.json                 HF save_pretrained-style config
  pretrained/model.safetensors           "transformer."-prefixed names, F32, no lm_head.weight,
                                         __metadata__ {"format": "pt"}
  pretrained/model_with_lm_head.safetensors  same plus lm_head.weight [V,C] (= wte)
  pretrained/model_f16.safetensors, model_bf16.safetensors  same as model.safetensors, every
                                         tensor rounded by torch to F16 / BF16
  hub/config.json, hub/model.safetensors the original hub `gpt2` layout: no prefix, plus the
      old buffers h.{i}.attn.bias F32 [1,1,12,12] (lower-triangular ones) and
      h.{i}.attn.masked_bias F32 scalar (shape []) = -10000; no __metadata__; data section in
      reversed order, header keys in alphabetical order (a reader must sort by offset)
  sharded/config.json, sharded/model.safetensors.index.json, sharded/model-0000{1,2}-of-00002.safetensors
      a checkpoint in two shards, as save_pretrained(max_shard_size=...) writes one: F32,
      "transformer."-prefixed, __metadata__ {"format": "pt"}, an index {"metadata": {"total_size"},
      "weight_map": {name: shard}}. Shard 1 holds h.1.*, ln_f.* and lm_head.weight, shard 2 wte,
      wpe and h.0.*: the tied head comes before the wte it must equal, so a reader cannot check
      it shard by shard.
  expected.bin  RLHFFIX1 records (format of tools/gen_golden.py): config i32[5] =
      [V,n_positions,L,NH,C]; inputs i32[2,12]; logits.f32, logits.f16, logits.bf16 f32[2,12,V]
      (float64 forward of the F32 / F16-rounded / BF16-rounded weights, rounded to float32).
The forward is gen_golden.py's float64 GPT-2 (matches HF GPT2LMHeadModel), with its
module constants patched to this config. Deterministic; self-checks every file it writes.

Run from the repo root:  /usr/bin/python3 tools/gen_hf_fixtures.py
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # importing gen_golden must not leave tools/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_golden as gg  # noqa: E402

V, NPOS, C, L, NH, B = 61, 12, 16, 2, 2, 2
for k, v in dict(V=V, MAXT=NPOS, C=C, L=L, NH=NH, HS=C // NH).items():
    setattr(gg, k, v)  # gen_golden's forward reads these module globals at call time
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")
ST_DTYPES = {torch.float32: ("F32", 4, torch.int32), torch.float16: ("F16", 2, torch.int16),
             torch.bfloat16: ("BF16", 2, torch.int16)}
NP_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
BASE_CONFIG = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
               "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
               "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": NPOS, "n_embd": C, "n_head": NH,
               "n_layer": L, "n_positions": NPOS, "resid_pdrop": 0.1, "summary_activation": None,
               "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
               "summary_use_proj": True, "vocab_size": V}
PRETRAINED_CONFIG = dict(BASE_CONFIG, n_inner=None, reorder_and_upcast_attn=False, scale_attn_by_inverse_layer_idx=False,
                         scale_attn_weights=True, tie_word_embeddings=True, torch_dtype="float32",
                         transformers_version="4.40.0", use_cache=True)
HUB_CONFIG = dict(BASE_CONFIG, task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}})


def make_params():
    """HF GPT-2 names -> float32 tensors, in HF's parameter order."""
    torch.manual_seed(7)
    n = lambda *shape, std: torch.randn(*shape, dtype=torch.float32) * std
    p = [("wte.weight", n(V, C, std=0.2)), ("wpe.weight", n(NPOS, C, std=0.2))]
    for i in range(L):
        h = f"h.{i}."
        p += [(h + "ln_1.weight", 1 + n(C, std=0.1)), (h + "ln_1.bias", n(C, std=0.05)),
              (h + "attn.c_attn.weight", n(C, 3 * C, std=0.2)), (h + "attn.c_attn.bias", n(3 * C, std=0.05)),
              (h + "attn.c_proj.weight", n(C, C, std=0.2)), (h + "attn.c_proj.bias", n(C, std=0.05)),
              (h + "ln_2.weight", 1 + n(C, std=0.1)), (h + "ln_2.bias", n(C, std=0.05)),
              (h + "mlp.c_fc.weight", n(C, 4 * C, std=0.2)), (h + "mlp.c_fc.bias", n(4 * C, std=0.05)),
              (h + "mlp.c_proj.weight", n(4 * C, C, std=0.2)), (h + "mlp.c_proj.bias", n(C, std=0.05))]
    return p + [("ln_f.weight", 1 + n(C, std=0.1)), ("ln_f.bias", n(C, std=0.05))]


def tensor_bytes(t):
    """Little-endian row-major bytes of a float32/float16/bfloat16 tensor."""
    _, _, itype = ST_DTYPES[t.dtype]
    a = t.contiguous().view(itype).numpy()  # bit pattern; 0-d stays 0-d
    return a.astype(a.dtype.newbyteorder("<")).tobytes(order="C")


def write_safetensors(path, tensors, metadata=None, data_order=None, key_order=None):
    """tensors: list of (name, tensor). data_order / key_order: name lists (default: given order)."""
    d = dict(tensors)
    assert len(d) == len(tensors), "duplicate names"
    data_order, key_order = data_order or list(d), key_order or list(d)
    assert sorted(data_order) == sorted(d) == sorted(key_order)
    blobs, entries, off = [], {}, 0
    for name in data_order:
        b = tensor_bytes(d[name])
        entries[name] = {"dtype": ST_DTYPES[d[name].dtype][0], "shape": list(d[name].shape),
                         "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    header = {} if metadata is None else {"__metadata__": metadata}
    header.update((k, entries[k]) for k in key_order)
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hb += b" " * (-(8 + len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def read_safetensors(path):
    """Strict reader (reference-reader rules + no duplicate keys). Returns (header, {name: np array})."""
    data = open(path, "rb").read()
    assert len(data) >= 8
    (n,) = struct.unpack_from("<Q", data, 0)
    assert n <= 100_000_000 and 8 + n <= len(data) and (8 + n) % 8 == 0

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), "duplicate key"
        return dict(pairs)
    header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_dups)
    meta = header.pop("__metadata__", None)
    assert meta is None or all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    body, pos, out = data[8 + n:], 0, {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = e["data_offsets"]
        assert begin == pos and end >= begin, f"{name}: gap/overlap"
        dt = NP_DTYPES[e["dtype"]]
        assert int(np.prod(e["shape"], dtype=np.int64)) * dt.itemsize == end - begin, name
        out[name] = np.frombuffer(body, dt, (end - begin) // dt.itemsize, begin).reshape(e["shape"])
        pos = end
    assert pos == len(body), "data section not covered exactly"
    return dict(header, **({"__metadata__": meta} if meta is not None else {})), out


def to_f64(arr, dtype):
    """Decode a read-back array (BF16 arrives as raw u16) to a float64 torch tensor."""
    if dtype == "BF16":
        return torch.from_numpy((arr.astype(np.uint32) << 16).view(np.float32).copy()).double()
    return torch.from_numpy(arr.astype(np.float64))


def logits_of(P):  # float64 forward, result rounded to float32
    return gg.forward({k: v.double() for k, v in P.items()}, IDX)[0].float().numpy()


def write_config(folder, cfg):
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


IDX = torch.randint(0, V, (B, NPOS), generator=torch.Generator().manual_seed(2024))


def main():
    gg.sanity_checks()  # gen_golden's attention-vs-loop and GELU checks, at this config
    params = make_params()
    P32 = dict(params)
    pre, hub = os.path.join(OUT, "pretrained"), os.path.join(OUT, "hub")
    for folder, cfg in [(pre, PRETRAINED_CONFIG), (hub, HUB_CONFIG)]:
        os.makedirs(folder, exist_ok=True); write_config(folder, cfg)
    meta = {"format": "pt"}
    expect = {}  # path -> ({name: tensor}, metadata); data sorted by name, like safetensors' writer
    for fname, dt, head in [("model", torch.float32, False), ("model_with_lm_head", torch.float32, True),
                            ("model_f16", torch.float16, False), ("model_bf16", torch.bfloat16, False)]:
        t = [("transformer." + k, v.to(dt)) for k, v in params]
        if head:
            t.append(("lm_head.weight", P32["wte.weight"].clone()))
        t.sort()
        path = os.path.join(pre, fname + ".safetensors")
        write_safetensors(path, t, meta)
        expect[path] = (dict(t), meta)
    ht = []  # hub order: each layer's old attention buffers right after its ln_1 (as in HF's state_dict)
    for k, v in params:
        ht.append((k, v))
        if k.endswith(".ln_1.bias"):
            h = k[:-len("ln_1.bias")]
            ht += [(h + "attn.bias", torch.ones(NPOS, NPOS).tril().view(1, 1, NPOS, NPOS)),
                   (h + "attn.masked_bias", torch.tensor(-10000.0))]
    names = [k for k, _ in ht]
    path = os.path.join(hub, "model.safetensors")
    write_safetensors(path, ht, None, data_order=names[::-1], key_order=sorted(names))
    expect[path] = (dict(ht), None)

    shd = os.path.join(OUT, "sharded")
    os.makedirs(shd, exist_ok=True); write_config(shd, PRETRAINED_CONFIG)
    full = [("transformer." + k, v) for k, v in params] + [("lm_head.weight", P32["wte.weight"].clone())]
    in_first = lambda k: k.startswith(("transformer.h.1.", "transformer.ln_f.")) or k == "lm_head.weight"
    weight_map, total = {}, 0
    for i, part in enumerate([sorted(t for t in full if in_first(t[0])), sorted(t for t in full if not in_first(t[0]))]):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        write_safetensors(os.path.join(shd, fname), part, meta)
        expect[os.path.join(shd, fname)] = (dict(part), meta)
        weight_map.update((k, fname) for k, _ in part)
        total += sum(len(tensor_bytes(v)) for _, v in part)
    with open(os.path.join(shd, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                           indent=2) + "\n")

    logits = {"f32": logits_of(P32)}
    for tag, dt in [("f16", torch.float16), ("bf16", torch.bfloat16)]:
        logits[tag] = logits_of({k: v.to(dt) for k, v in P32.items()})
    rec = [("config", np.array([V, NPOS, L, NH, C], np.int32)), ("inputs", IDX.to(torch.int32).numpy())]
    rec += [("logits." + k, v) for k, v in logits.items()]
    gg.write_fixture(os.path.join(OUT, "expected.bin"), rec)

    # Self-check: read every file back with the strict reader, compare bits, recompute logits.
    union = {}  # the shards' tensors, through the index
    for path, (tens, md) in expect.items():
        header, arrs = read_safetensors(path)
        assert header.get("__metadata__") == md and set(arrs) == set(tens), path
        for k, t in tens.items():
            assert list(arrs[k].shape) == list(t.shape) and arrs[k].tobytes() == tensor_bytes(t), (path, k)
        if os.path.dirname(path) == shd:
            index = json.load(open(os.path.join(shd, "model.safetensors.index.json")))["weight_map"]
            assert all(index[k] == os.path.basename(path) for k in arrs) and not set(arrs) & set(union), path
            union.update(arrs)
            print(f"{os.path.relpath(path, ROOT)}: {len(arrs)} tensors, {os.path.getsize(path)} bytes, read-back OK")
            if len(union) < len(index):
                continue
            header, arrs = {k: {"dtype": "F32"} for k in union}, union
        strip = {k.replace("transformer.", "", 1): to_f64(a, header[k]["dtype"]) for k, a in arrs.items()}
        if "lm_head.weight" in strip:
            assert torch.equal(strip.pop("lm_head.weight"), strip["wte.weight"])
        for i in range(L):
            if f"h.{i}.attn.bias" in strip:
                assert torch.equal(strip.pop(f"h.{i}.attn.bias")[0, 0], torch.ones(NPOS, NPOS).tril().double())
                assert strip.pop(f"h.{i}.attn.masked_bias").item() == -10000.0
        tag = "bf16" if "bf16" in path else "f16" if "f16" in path else "f32"
        assert np.array_equal(logits_of(strip), logits[tag]), path
        if arrs is union:
            print(f"{os.path.relpath(shd, ROOT)}: the {len(arrs)} tensors of both shards give the expected logits")
        else:
            print(f"{os.path.relpath(path, ROOT)}: {len(arrs)} tensors, {os.path.getsize(path)} bytes, read-back OK")
    back = gg.read_fixture(os.path.join(OUT, "expected.bin"))
    assert [n for n, _ in back] == [n for n, _ in rec] and all(np.array_equal(a, b) for (_, a), (_, b) in zip(back, rec))
    d16, db16 = (np.abs(logits[t] - logits["f32"]).max() for t in ("f16", "bf16"))
    print(f"expected.bin OK; |logits| max {np.abs(logits['f32']).max():.4f}, "
          f"max |f16 - f32| {d16:.2e}, max |bf16 - f32| {db16:.2e}")


if __name__ == "__main__":
    main()
