"""torch_replica.py - a PyTorch replica of a d2nwg generator, for bench_torch.sh.

The modules below mirror core/nn (resmlp, attention) and core/model (setenc,
denoiser) layer by layer and name by name, so the C bundle's tensors load with
load_state_dict(strict=True): the parameter count is then equal tensor by
tensor, by construction (`check` prints the totals). The configuration comes
from the bundle's metadata, so the replica follows whatever the default
generator is.

What each mode times (PyTorch 1.13 from Debian, run with OPENBLAS_NUM_THREADS=1
and torch.set_num_threads(THREADS), as the fair baseline of issue 19):
  stage1  steps/s of stage 1 (token VAE): vae_batch zoo entries -> tokens,
          encoder, reparameterisation + latent noise, decoder, MSE + beta KL,
          backward, global-norm clipping, AdamW.
  stage2  steps/s of stage 2: tasks_per_step support sets of K ~ U[kmin, kmax]
          shots per class, encoder, condition drop-out, noise_per_task
          noised latents per task, denoiser, eps MSE, backward, clipping,
          AdamW, EMA.
  gen     ms of one generation job: PCA map and standardisation of a
          way x shots support set, the encoder, DDIM over the candidates with
          classifier-free guidance (conditional and null rows in one pass, as
          the C sampler), VAE decode of the latents, head accuracy on the
          support set.
Differences from the C run that favour PyTorch, stated so the ratio is read
right: the support sets of stage 2 are random tensors (the C trainer gathers
and standardises real features each step), and the generation job encodes the
classes in one batch (the C encoder runs them one by one, since their sizes
may differ).

Usage: python3 torch_replica.py BUNDLE MODE [THREADS] [REPS]
  MODE check: load strict and print the parameter counts.
Prints one line "RESULT <mode> <value>"."""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- safetensors

def read_safetensors(path):
    """{name: tensor} and the metadata dict, with struct/json/numpy only."""
    dtypes = {"F32": np.float32, "I32": np.int32, "F64": np.float64, "I64": np.int64,
              "U8": np.uint8}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype=dtypes[info["dtype"]])
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out, meta


# ---------------------------------------------------------------- layers

class ResMLP(nn.Module):
    """core/nn/resmlp.c: in -> blocks of h + fc2 silu(fc1 LN(h)) -> LN -> out."""

    def __init__(self, din, hidden, dout, blocks):
        super().__init__()
        self.add_module("in", nn.Linear(din, hidden))
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            b = nn.Module()
            b.ln = nn.LayerNorm(hidden)
            b.fc1 = nn.Linear(hidden, hidden)
            b.fc2 = nn.Linear(hidden, hidden)
            self.blocks.append(b)
        self.ln_out = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dout)

    def forward(self, x):
        h = getattr(self, "in")(x)
        for b in self.blocks:
            h = h + b.fc2(F.silu(b.fc1(b.ln(h))))
        return self.out(self.ln_out(h))


class MAB(nn.Module):
    """core/nn/attention.c: O = Q + merge(softmax(Qh Kh^T / sqrt(dh)) Vh), LN0,
    O + relu(fc_o O), LN1."""

    def __init__(self, dx, dy, d, heads):
        super().__init__()
        self.h = heads
        self.fc_q = nn.Linear(dx, d)
        self.fc_k = nn.Linear(dy, d)
        self.fc_v = nn.Linear(dy, d)
        self.fc_o = nn.Linear(d, d)
        self.ln0 = nn.LayerNorm(d)
        self.ln1 = nn.LayerNorm(d)

    def forward(self, x, y):
        q, k, v = self.fc_q(x), self.fc_k(y), self.fc_v(y)
        B, Nx, d = q.shape
        Ny, dh = k.shape[1], d // self.h
        qh = q.view(B, Nx, self.h, dh).transpose(1, 2)
        kh = k.view(B, Ny, self.h, dh).transpose(1, 2)
        vh = v.view(B, Ny, self.h, dh).transpose(1, 2)
        att = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        o = q + (att @ vh).transpose(1, 2).reshape(B, Nx, d)
        o = self.ln0(o)
        o = o + F.relu(self.fc_o(o))
        return self.ln1(o)


class ISAB(nn.Module):
    def __init__(self, d, heads, m):
        super().__init__()
        self.I = nn.Parameter(torch.zeros(m, d))
        self.mab0 = MAB(d, d, d, heads)
        self.mab1 = MAB(d, d, d, heads)

    def forward(self, x):
        h = self.mab0(self.I.unsqueeze(0).expand(x.shape[0], -1, -1), x)
        return self.mab1(x, h)


class PMA(nn.Module):
    def __init__(self, d, heads, k):
        super().__init__()
        self.S = nn.Parameter(torch.zeros(k, d))
        self.mab = MAB(d, d, d, heads)

    def forward(self, x):
        return self.mab(self.S.unsqueeze(0).expand(x.shape[0], -1, -1), x)


class SetEnc(nn.Module):
    """core/model/setenc.c: per class ISAB, ISAB, PMA + fmean(class mean),
    + pos[label], SAB across the classes, fout(flatten)."""

    def __init__(self, F_, d, heads, m, way, cond, absent):
        super().__init__()
        self.way, self.d = way, d
        self.fin = nn.Linear(F_, d)
        self.isab1 = ISAB(d, heads, m)
        self.isab2 = ISAB(d, heads, m)
        self.pma = PMA(d, heads, 1)
        self.fmean = nn.Linear(F_, d)
        self.pos = nn.Parameter(torch.zeros(way, d))
        if absent:
            self.absent = nn.Parameter(torch.zeros(d))
        self.sab = MAB(d, d, d, heads)
        self.fout = nn.Linear(way * d, cond)

    def forward(self, X):
        """X: [B, N, K, F] -> [B, cond]"""
        B, N, K, F_ = X.shape
        xs = X.reshape(B * N, K, F_)
        h = self.isab2(self.isab1(self.fin(xs)))
        tok = self.pma(h)[:, 0] + self.fmean(xs.mean(1))
        tok = tok.view(B, N, self.d) + self.pos
        return self.fout(self.sab(tok, tok).reshape(B, N * self.d))


class Denoiser(nn.Module):
    """core/model/denoiser.c: adaLN-Zero residual MLP; rows grouped G per
    condition row."""

    def __init__(self, L, H, ratio, blocks, cond, temb):
        super().__init__()
        self.H, self.temb = H, temb
        self.t1 = nn.Linear(temb, H)
        self.t2 = nn.Linear(H, H)
        self.cproj = nn.Linear(cond, H)
        self.fin = nn.Linear(L, H)
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            b = nn.Module()
            b.mod = nn.Linear(H, 3 * H)
            b.fc1 = nn.Linear(H, ratio * H)
            b.fc2 = nn.Linear(ratio * H, H)
            self.blocks.append(b)
        self.fmod = nn.Linear(H, 2 * H)
        self.fout = nn.Linear(H, L)
        self.null_cond = nn.Parameter(torch.zeros(cond))

    def tfeat(self, t):
        half = self.temb // 2
        freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        a = t.to(torch.float64)[:, None] * freq[None]
        return torch.cat([torch.cos(a), torch.sin(a)], 1).float()

    def forward(self, z, temb, cond, G=1):
        """z: [S*G, L], temb: [S, temb], cond: [S, cond]"""
        S, H = cond.shape[0], self.H
        s = F.silu(self.t2(F.silu(self.t1(temb))) + self.cproj(cond))
        x = self.fin(z).view(S, G, H)
        for b in self.blocks:
            sh, sc, gt = b.mod(s).unsqueeze(1).chunk(3, dim=2)
            m = F.layer_norm(x, (H,)) * (1 + sc) + sh
            x = x + gt * b.fc2(F.silu(b.fc1(m)))
        sh, sc = self.fmod(s).unsqueeze(1).chunk(2, dim=2)
        return self.fout(F.layer_norm(x, (H,)) * (1 + sc) + sh).view(S * G, -1)


class Generator(nn.Module):
    def __init__(self, cfg, tensors):
        super().__init__()
        v, e, dn = cfg["vae"], cfg["encoder"], cfg["denoiser"]
        self.cfg = cfg
        len_ = tensors["vae.dec.out.weight"].shape[0]
        layers = tensors["vae.enc.in.weight"].shape[1] - len_
        self.len, self.layers, self.l = len_, layers, v["token_latent"]
        self.vae = nn.Module()
        self.vae.enc = ResMLP(len_ + layers, v["hidden"], 2 * v["token_latent"], v["blocks"])
        self.vae.dec = ResMLP(v["token_latent"] + layers, v["hidden"], len_, v["blocks"])
        self.enc = SetEnc(cfg["feature_dim"], e["d"], e["heads"], e["inducing"], cfg["way"],
                          e["cond_dim"], "enc.absent" in tensors)
        self.den = Denoiser(v["latent"], dn["hidden"], dn["mlp_ratio"], dn["blocks"],
                            e["cond_dim"], dn["temb_dim"])
        for k, t in tensors.items():  # statistics and the feature map: buffers
            if k.startswith(("stats.", "fmap.")):
                self.register_buffer(k.replace(".", "_"), t)

    def state_from_bundle(self, tensors):
        return {(k.replace(".", "_") if k.startswith(("stats.", "fmap.")) else k): t
                for k, t in tensors.items() if not k.startswith("zoo.")}


def load(path):
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    g = Generator(cfg, tensors)
    g.load_state_dict(g.state_from_bundle(tensors), strict=True)
    tcfg = json.loads(meta["provenance"])["training"]
    return g, tensors, cfg, tcfg


def adamw(params, lr, wd):
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd,
                             foreach=True)


# ---------------------------------------------------------------- stage 1

def stage1(g, tensors, tcfg, steps):
    """steps/s of stage-1 steps (after 5 warm-up steps)."""
    theta = (tensors["zoo.theta"] - tensors["stats.w_mean"]) / tensors["stats.w_std"]
    n, P = theta.shape
    W = g.cfg["way"]
    B, l, ln, nl = tcfg["vae_batch"], g.l, g.len, g.layers
    ntok = P // ln  # one-layer heads: way tokens of in + 1 values
    onehot = torch.zeros(B * ntok, nl)
    onehot[:, 0] = 1.0
    params = list(g.vae.parameters())
    opt = adamw(params, tcfg["vae_lr"], 0.0)
    beta, in_noise, lat_noise = g.cfg["vae"]["beta"], tcfg["in_noise"], tcfg["lat_noise"]
    gen = torch.Generator().manual_seed(1)
    assert ntok == W

    def step():
        idx = torch.randint(0, n, (B,), generator=gen)
        th = theta[idx]  # [B, P] -> tokens [B * way, in + 1]: a class's weights, its bias
        xt = torch.cat([th[:, :-W].reshape(B, W, ln - 1), th[:, -W:, None]], 2).view(-1, ln)
        xin = xt + in_noise * torch.randn(xt.shape, generator=gen)
        out = g.vae.enc(torch.cat([xin, onehot], 1))
        mu, lv = out[:, :l], out[:, l:].clamp(-20.0, 10.0)
        z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=gen) \
            + lat_noise * torch.randn(mu.shape, generator=gen)
        xh = g.vae.dec(torch.cat([z, onehot[:, :nl]], 1))
        mse = F.mse_loss(xh, xt)
        kl = 0.5 * (mu * mu + lv.exp() - 1 - lv).sum() / B
        loss = mse + beta * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


# ---------------------------------------------------------------- stage 2

def stage2(g, tensors, tcfg, steps):
    """steps/s of stage-2 steps (after 3 warm-up steps)."""
    Z = torch.randn(tensors["zoo.theta"].shape[0], g.cfg["vae"]["latent"])  # zoo latents
    cfg = g.cfg
    B, M, N, Fd = tcfg["tasks_per_step"], tcfg["noise_per_task"], cfg["way"], cfg["feature_dim"]
    kmin, kmax = tcfg["shots"]
    T = cfg["diffusion"]["T"]
    betas = torch.linspace(cfg["diffusion"]["beta_start"], cfg["diffusion"]["beta_end"], T,
                           dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)
    params = list(g.enc.parameters()) + list(g.den.parameters())
    opt = adamw(params, tcfg["lr"], 0.01)
    ema = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(2)

    def step():
        K = int(torch.randint(kmin, kmax + 1, (1,), generator=gen))
        X = torch.randn(B, N, K, Fd, generator=gen)
        ent = torch.randint(0, Z.shape[0], (B,), generator=gen)
        drop = torch.rand(B, generator=gen) < tcfg["p_uncond"]
        t = torch.randint(0, T, (M * B,), generator=gen)
        eps = torch.randn(M * B, Z.shape[1], generator=gen)
        a = ab[t].float()[:, None]
        zt = a.sqrt() * Z[ent].repeat(M, 1) + (1 - a).sqrt() * eps
        cond = g.enc(X)
        cond = torch.where(drop[:, None], g.den.null_cond.expand(B, -1), cond)
        pred = g.den(zt, g.den.tfeat(t), cond.repeat(M, 1))
        loss = F.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.999)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=0.001)

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)


# ---------------------------------------------------------------- generation

def ddim_coefs(cfg, steps):
    """the C sampler's timesteps and (a, b) per step, eta = 0 (core/model/diffusion.c)"""
    d = cfg["diffusion"]
    T = d["T"]
    betas = np.linspace(d["beta_start"], d["beta_end"], T, dtype=np.float64)
    ab = np.cumprod(1 - betas)
    tau = [int(math.floor((steps - 1 - i) * (T - 1) / (steps - 1) + 0.5)) for i in range(steps)]
    out = []
    for i, t in enumerate(tau):
        ap = ab[tau[i + 1]] if i + 1 < steps else 1.0
        a = math.sqrt(ap / ab[t])
        b = math.sqrt(1 - ap) - a * math.sqrt(1 - ab[t])
        out.append((t, a, b))
    return out


@torch.no_grad()
def generate(g, x, y, K, steps, w, seed):
    """one job: x [n, input] raw support samples, y [n] labels -> K heads [K, W, in+1]"""
    cfg = g.cfg
    N, shots = cfg["way"], x.shape[0] // cfg["way"]
    feat = (x - g.fmap_mean) @ g.fmap_W.t()
    feat_s = (feat - g.stats_f_mean) / g.stats_f_std
    cond = g.enc(feat_s.view(N, shots, -1).unsqueeze(0))
    conds = torch.cat([cond, g.den.null_cond[None]], 0)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(K, cfg["vae"]["latent"], generator=gen)
    for t, a, b in ddim_coefs(cfg, steps):
        temb = g.den.tfeat(torch.tensor([t, t]))
        eps = g.den(torch.cat([z, z], 0), temb, conds, G=K)
        eps = w * eps[:K] + (1 - w) * eps[K:]
        z = a * z + b * eps
    zr = (z * g.stats_z_std + g.stats_z_mean).view(K * N, g.l)
    onehot = torch.zeros(K * N, g.layers)
    onehot[:, 0] = 1.0
    tok = g.vae.dec(torch.cat([zr, onehot], 1)).view(K, N, g.len)
    # tokens -> theta (weights row-major, then the biases), then un-normalise
    theta = torch.cat([tok[:, :, :-1].reshape(K, -1), tok[:, :, -1]], 1)
    theta = theta * g.stats_w_std + g.stats_w_mean
    Wt, bt = theta[:, :-N].view(K, N, -1), theta[:, -N:]
    logits = torch.einsum("kwi,ni->knw", Wt, feat) + bt[:, None, :]
    acc = (logits.argmax(-1) == y[None]).float().mean(1)
    return theta, acc


def gen_job_ms(g, reps):
    cfg = g.cfg
    samp = cfg["sampler"]
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(cfg["way"] * 5, cfg["input_dim"], generator=gen)
    y = torch.arange(cfg["way"]).repeat_interleave(5)
    generate(g, x, y, samp["candidates"], samp["steps"], samp["guidance"], 1)  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        generate(g, x, y, samp["candidates"], samp["steps"], samp["guidance"], 1)
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    path, mode = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g, tensors, cfg, tcfg = load(path)
    if mode == "check":
        n_model = sum(t.numel() for t in g.state_dict().values())
        n_bundle = sum(t.numel() for k, t in tensors.items() if not k.startswith("zoo."))
        print("RESULT check %d %d %d" % (len(g.state_dict()), n_model, n_bundle))
    elif mode == "stage1":
        print("RESULT stage1 %.3f" % stage1(g, tensors, tcfg, reps or 60))
    elif mode == "stage2":
        print("RESULT stage2 %.3f" % stage2(g, tensors, tcfg, reps or 30))
    elif mode == "gen":
        print("RESULT gen %.3f" % gen_job_ms(g, reps or 10))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
