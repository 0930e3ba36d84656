"""Golden numbers for rlhf.h's DPO losses, group advantages and the GRPO and
RLOO policy losses, from PyTorch.

Independent of rlhf.h: the losses are written as TRL's DPOTrainer writes them
(F.logsigmoid, relu, the IPO square), evaluated in float64, with gradients by
autograd; the advantages as TRL's GRPOTrainer and OpenRLHF compute them
(torch.std with Bessel's correction, the leave-one-out mean). Inputs are
stored as float32, the values rlhf.h reads; results are rounded to float32.

Run from the repo root:
    /usr/bin/python3 tools/gen_dpo_golden.py [output_path]
output_path defaults to tests/fixtures/dpo_golden.bin.

Fixture format: RLHFFIX1, as tools/gen_reward_golden.py. Records:
    dpo.count i32: cases; per case k:
      dpo.k.type i32 (0 sigmoid, 1 ipo, 2 hinge, 3 simpo), dpo.k.beta f32, dpo.k.eps f32,
      dpo.k.pc, dpo.k.pr, dpo.k.rc, dpo.k.rr f32[n]: log-probs of chosen and
        rejected under the policy and the reference (simpo: per-token means of
        the policy, rc = gamma / beta and rr = 0, rlhf.h's convention);
      dpo.k.loss f32: the mean loss; dpo.k.dc, dpo.k.dr f32[n]: its gradient in
        pc and pr.
    adv.count i32: cases; per case k:
      adv.k.type i32 (0 GRPO, 1 Dr. GRPO, 2 RLOO), adv.k.r f32[groups, G],
      adv.k.adv f32[groups, G].
    grpo.count i32: cases; per case k (TRL's GRPOTrainer loss, per token):
      grpo.k.agg i32 (0 "grpo", 1 "bnpo", 2 "dr_grpo", 3 "dapo"), grpo.k.eps f32[2]
      (low, high), grpo.k.beta f32, grpo.k.norm f32 (dr_grpo: max_len; dapo: the
      normaliser, TRL's num_items_in_batch), grpo.k.lens i32[n],
      grpo.k.adv f32[n], grpo.k.logp, grpo.k.old, grpo.k.ref f32[tokens] (the
      replies packed), grpo.k.loss f32, grpo.k.d f32[tokens]: dloss/dlogp,
      grpo.k.clipfrac f32, grpo.k.kl f32: the mean k3 over tokens.
    rloo.count i32: cases; per case k (the sequence-level clipped REINFORCE):
      rloo.k.eps f32[2], rloo.k.lens i32[n], rloo.k.adv f32[n], rloo.k.logp,
      rloo.k.old f32[tokens], rloo.k.loss f32, rloo.k.d f32[tokens].
    kto.count i32: cases; per case k (TRL's KTOTrainer kto_loss):
      kto.k.cfg f32[4] (beta, kl, desirable weight, undesirable weight),
      kto.k.label i32[n], kto.k.policy, kto.k.ref f32[n], kto.k.loss f32,
      kto.k.d f32[n]: dloss/dpolicy.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from gen_golden import write_fixture  # the RLHFFIX1 writer the other fixtures use

DT = torch.float64


def dpo_case(kind, beta, eps, pc, pr, rc, rr):
    """TRL's DPO loss (mean over pairs) and its gradient in the policy log-probs."""
    pc_t = torch.tensor(pc, dtype=DT, requires_grad=True)
    pr_t = torch.tensor(pr, dtype=DT, requires_grad=True)
    logits = (pc_t - torch.tensor(rc, dtype=DT)) - (pr_t - torch.tensor(rr, dtype=DT))
    if kind == 0:
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif kind == 1:
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        losses = torch.relu(1 - beta * logits)
    loss = losses.mean()
    loss.backward()
    return loss.item(), pc_t.grad.numpy(), pr_t.grad.numpy()


def simpo_case(beta, gamma, eps, pc, pr):
    """TRL's CPOTrainer with loss_type "simpo": no reference, per-token mean log-probs."""
    pc_t = torch.tensor(pc, dtype=DT, requires_grad=True)
    pr_t = torch.tensor(pr, dtype=DT, requires_grad=True)
    logits = (pc_t - pr_t) - gamma / beta
    losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    loss = losses.mean()
    loss.backward()
    return loss.item(), pc_t.grad.numpy(), pr_t.grad.numpy()


def advantages(kind, r):
    """GRPO / Dr. GRPO / RLOO advantages of rewards r (groups, G), in float64."""
    r = torch.tensor(r, dtype=DT)
    G = r.shape[1]
    mean = r.mean(dim=1, keepdim=True)
    if kind == 0:
        if G == 1:  # torch.std of one sample is NaN; rlhf.h defines the advantage as 0
            return torch.zeros_like(r).numpy()
        std = r.std(dim=1, keepdim=True)  # unbiased (Bessel), as TRL
        return ((r - mean) / (std + 1e-4)).numpy()
    if kind == 1:
        return (r - mean).numpy()
    if G == 1:
        return torch.zeros_like(r).numpy()
    return (r - (r.sum(dim=1, keepdim=True) - r) / (G - 1)).numpy()


def pad(x, lens):
    """Packed per-token values into (n, max(lens)) rows and their mask."""
    L = max(lens)
    out = torch.zeros((len(lens), L), dtype=DT)
    mask = torch.zeros((len(lens), L), dtype=DT)
    k = 0
    for i, n in enumerate(lens):
        out[i, :n] = torch.tensor(x[k:k + n], dtype=DT)
        mask[i, :n] = 1
        k += n
    return out, mask


def unpad(x, lens):
    return np.concatenate([x[i, :n] for i, n in enumerate(lens)])


def grpo_case(agg, eps_low, eps_high, beta, norm, lens, adv, logp, old, ref):
    """TRL's GRPO loss: -min(r A, clip(r) A) + beta k3 per token, aggregated."""
    lp, mask = pad(logp, lens)
    lp.requires_grad_(True)
    od, _ = pad(old, lens)
    rf, _ = pad(ref, lens)
    A = torch.tensor(adv, dtype=DT)[:, None]
    c1 = torch.exp(lp - od)
    c2 = torch.clamp(c1, 1 - eps_low, 1 + eps_high)
    per_tok = -torch.min(c1 * A, c2 * A)
    kl = torch.exp(rf - lp) - (rf - lp) - 1
    if beta != 0:
        per_tok = per_tok + beta * kl
    if agg == 0:
        loss = ((per_tok * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif agg == 1:  # bnpo: the batch's tokens
        loss = (per_tok * mask).sum() / mask.sum()
    elif agg == 2:  # dr_grpo: a constant, size(0) x max_completion_length
        loss = (per_tok * mask).sum() / (len(lens) * norm)
    else:  # dapo: the tokens of the whole generation batch (num_items_in_batch)
        loss = (per_tok * mask).sum() / norm
    loss.backward()
    clipped = ((c2 * A) < (c1 * A)).to(DT)  # the clipped term is the smaller of -loss's two: it was used
    clipfrac = (clipped * mask).sum() / mask.sum()
    mean_kl = (kl * mask).sum() / mask.sum() if beta != 0 else torch.tensor(0.0)
    return loss.item(), unpad(lp.grad.numpy(), lens), clipfrac.item(), mean_kl.item()


def rloo_case(eps_low, eps_high, lens, adv, logp, old):
    """The clipped REINFORCE of TRL's RLOOTrainer: the ratio of whole replies."""
    lp, mask = pad(logp, lens)
    lp.requires_grad_(True)
    od, _ = pad(old, lens)
    A = torch.tensor(adv, dtype=DT)
    ratio = torch.exp(((lp - od) * mask).sum(-1))
    loss = torch.max(-A * ratio, -A * torch.clamp(ratio, 1 - eps_low, 1 + eps_high)).mean()
    loss.backward()
    return loss.item(), unpad(lp.grad.numpy(), lens)


def group_loss_records(rng):
    """GRPO and RLOO loss cases: ratios near 1 and far from it (clipped on
    both sides), zero advantages, replies of 1 token, beta 0 and > 0."""
    recs = []
    cases = [(0, 0.2, 0.2, 0.0), (0, 0.2, 0.28, 0.04), (1, 0.2, 0.28, 0.04), (2, 0.2, 0.2, 0.0), (2, 0.1, 0.3, 0.5),
             (1, 0.2, 0.2, 0.0), (0, 0.2, 0.2, 1.0), (3, 0.2, 0.28, 0.04)]
    recs.append(("grpo.count", np.int32(len(cases))))
    for k, (agg, lo, hi, beta) in enumerate(cases):
        lens = [int(x) for x in rng.integers(1, 9, 6)]
        lens[1] = 1
        N = sum(lens)
        adv = f32(rng.normal(0, 1, 6)); adv[2] = 0.0
        old = f32(rng.normal(-3, 1.5, N))
        logp = f32(old + rng.normal(0, 0.25 if k % 2 else 0.08, N))  # ratios spread across the clip range
        ref = f32(old + rng.normal(0, 0.5, N))
        norm = 10.0 if agg != 3 else 1.7 * N  # dapo: as if this minibatch were 1/1.7 of the rollout
        flo, fhi, fb, fn = (float(np.float32(v)) for v in (lo, hi, beta, norm))
        loss, d, cf, kl = grpo_case(agg, flo, fhi, fb, fn, lens, adv.astype(np.float64),
                                    logp.astype(np.float64), old.astype(np.float64), ref.astype(np.float64))
        p = f"grpo.{k}."
        recs += [(p + "agg", np.int32(agg)), (p + "eps", f32([lo, hi])), (p + "beta", np.float32(beta)),
                 (p + "norm", np.float32(norm)), (p + "lens", np.asarray(lens, dtype=np.int32)), (p + "adv", adv),
                 (p + "logp", logp), (p + "old", old), (p + "ref", ref), (p + "loss", np.float32(loss)),
                 (p + "d", f32(d)), (p + "clipfrac", np.float32(cf)), (p + "kl", np.float32(kl))]
    rcases = [(0.2, 0.2, 0.0), (0.2, 0.28, 0.05), (0.2, 0.2, 0.3)]
    recs.append(("rloo.count", np.int32(len(rcases))))
    for k, (lo, hi, spread) in enumerate(rcases):
        lens = [int(x) for x in rng.integers(1, 7, 5)]
        N = sum(lens)
        adv = f32(rng.normal(0, 1, 5)); adv[3] = 0.0
        old = f32(rng.normal(-3, 1.5, N))
        logp = f32(old + rng.normal(0, spread, N)) if spread > 0 else old.copy()
        loss, d = rloo_case(float(np.float32(lo)), float(np.float32(hi)), lens, adv.astype(np.float64),
                            logp.astype(np.float64), old.astype(np.float64))
        p = f"rloo.{k}."
        recs += [(p + "eps", f32([lo, hi])), (p + "lens", np.asarray(lens, dtype=np.int32)), (p + "adv", adv),
                 (p + "logp", logp), (p + "old", old), (p + "loss", np.float32(loss)), (p + "d", f32(d))]
    return recs


def kto_case(beta, kl, wd, wu, label, policy, ref):
    """TRL's kto_loss: 1 - sigmoid(beta (h - z)) for desirable, 1 - sigmoid(beta (z - h)) for
    undesirable completions, weighted, concatenated and averaged; z a constant."""
    p = torch.tensor(policy, dtype=DT, requires_grad=True)
    h = p - torch.tensor(ref, dtype=DT)
    lab = torch.tensor(label, dtype=torch.bool)
    chosen = 1 - torch.sigmoid(beta * (h[lab] - kl))
    rejected = 1 - torch.sigmoid(beta * (kl - h[~lab]))
    loss = torch.cat((wd * chosen, wu * rejected), 0).mean()
    loss.backward()
    return loss.item(), p.grad.numpy()


def kto_records(rng):
    """KTO cases: sequence log-probs of tens of tokens, z 0 and > 0, weights 1 and unequal, a gap of 1e4."""
    recs = []
    cases = [(0.1, 0.0, 1.0, 1.0), (0.1, 2.5, 1.0, 1.0), (0.5, 0.7, 1.33, 1.0), (2.0, 0.1, 1.0, 0.5)]
    recs.append(("kto.count", np.int32(len(cases))))
    for k, (beta, kl, wd, wu) in enumerate(cases):
        n = 10
        label = (rng.random(n) < 0.6).astype(np.int32)
        ref = f32(rng.normal(-40, 12, n))
        policy = f32(ref + rng.normal(0, 4, n))
        policy[0], ref[0] = -1e4, 0.0  # an extreme gap
        fb, fk, fd, fu = (float(np.float32(v)) for v in (beta, kl, wd, wu))
        loss, d = kto_case(fb, fk, fd, fu, label.astype(bool), policy.astype(np.float64), ref.astype(np.float64))
        p = f"kto.{k}."
        recs += [(p + "cfg", f32([beta, kl, wd, wu])), (p + "label", label), (p + "policy", policy), (p + "ref", ref),
                 (p + "loss", np.float32(loss)), (p + "d", f32(d))]
    return recs


def simpo_records(pc, pr):
    """SimPO cases appended to the DPO ones (dpo.count rewritten): per-token
    means of replies of 20 tokens, gamma 0.5 at beta 0.1 and 2.0, eps 0 and 0.2."""
    recs = []
    a, b = f32(pc / 20), f32(pr / 20)
    for k, (beta, gamma, eps) in enumerate([(0.1, 0.5, 0.0), (2.0, 0.5, 0.0), (2.0, 1.0, 0.2)]):
        fb, fg, fe = (float(np.float32(v)) for v in (beta, gamma, eps))
        loss, dc, dr = simpo_case(fb, fg, fe, a.astype(np.float64), b.astype(np.float64))
        p = f"dpo.{7 + k}."
        recs += [(p + "type", np.int32(3)), (p + "beta", np.float32(beta)), (p + "eps", np.float32(eps)),
                 (p + "pc", a), (p + "pr", b), (p + "rc", f32(np.full(len(a), np.float32(gamma) / np.float32(beta)))),
                 (p + "rr", f32(np.zeros(len(a)))), (p + "loss", np.float32(loss)), (p + "dc", f32(dc)),
                 (p + "dr", f32(dr))]
    return recs


def f32(x):
    return np.asarray(x, dtype=np.float32)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "dpo_golden.bin")
    rng = np.random.default_rng(15)
    recs = []

    # log-probs of replies: sums of tens of tokens, then extreme gaps (h = +-1e4,
    # +-200, 0) and large magnitudes whose difference is small
    n = 12
    pc = f32(rng.normal(-40, 15, n)); pr = f32(rng.normal(-45, 15, n))
    rc = f32(pc + rng.normal(0, 2, n)); rr = f32(pr + rng.normal(0, 2, n))
    pc[0], pr[0], rc[0], rr[0] = 0.0, -1e4, 0.0, 0.0        # h = +1e4
    pc[1], pr[1], rc[1], rr[1] = -1e4, 0.0, 0.0, 0.0        # h = -1e4
    pc[2], pr[2], rc[2], rr[2] = -5.0, -5.0, -5.0, -5.0     # h = 0
    pc[3], pr[3], rc[3], rr[3] = -3000.5, -3001.0, -3000.0, -3001.25  # large, close
    pc[4], pr[4], rc[4], rr[4] = -10.0, -210.0, -10.0, -10.0  # h = +200
    pc[5], pr[5], rc[5], rr[5] = -210.0, -10.0, -10.0, -10.0  # h = -200
    pc[6], pr[6], rc[6], rr[6] = -4.5, -5.0, -5.0, -5.0      # h = 0.5: the hinge's kink at beta 2 (relu'(0) = 0)
    cases = [(0, 0.1, 0.0), (0, 0.5, 0.1), (0, 0.1, 0.3), (1, 0.1, 0.0), (1, 1.0, 0.0), (2, 0.1, 0.0), (2, 2.0, 0.0)]
    recs.append(("dpo.count", np.int32(len(cases) + 3)))  # + the SimPO cases, appended last
    for k, (kind, beta, eps) in enumerate(cases):
        a, b, c, d = pc, pr, rc, rr
        if kind == 1:  # IPO takes per-token means: log-probs of replies of 20 tokens
            a, b, c, d = f32(pc / 20), f32(pr / 20), f32(rc / 20), f32(rr / 20)
        # beta and eps as rlhf.h reads them: the float32 values, widened
        loss, dc, dr = dpo_case(kind, float(np.float32(beta)), float(np.float32(eps)), a.astype(np.float64),
                                b.astype(np.float64), c.astype(np.float64), d.astype(np.float64))
        p = f"dpo.{k}."
        recs += [(p + "type", np.int32(kind)), (p + "beta", np.float32(beta)), (p + "eps", np.float32(eps)),
                 (p + "pc", a), (p + "pr", b), (p + "rc", c), (p + "rr", d),
                 (p + "loss", np.float32(loss)), (p + "dc", f32(dc)), (p + "dr", f32(dr))]

    # groups: random rewards, a group with zero variance, binary rewards, G = 1, 2, 4, 7
    groups = []
    for G in (1, 2, 4, 7):
        r = rng.normal(0.3, 1.2, (5, G))
        r[1, :] = 0.75                        # zero variance
        r[2, :] = (np.arange(G) % 2).astype(float)  # 0/1 rewards
        if G > 1:
            r[3, 0] = 1e3                     # one outlier
        groups.append(f32(r))
    adv_cases = [(kind, r) for r in groups for kind in (0, 1, 2)]
    recs.append(("adv.count", np.int32(len(adv_cases))))
    for k, (kind, r) in enumerate(adv_cases):
        p = f"adv.{k}."
        recs += [(p + "type", np.int32(kind)), (p + "r", r), (p + "adv", f32(advantages(kind, r.astype(np.float64))))]

    recs += group_loss_records(rng)
    recs += simpo_records(pc, pr)
    recs += kto_records(rng)
    write_fixture(out, recs)
    print(f"wrote {out}: {len(cases)} DPO cases, {len(adv_cases)} advantage cases, GRPO and RLOO loss cases")


if __name__ == "__main__":
    main()
