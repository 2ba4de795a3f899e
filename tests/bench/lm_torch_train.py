# lm_torch_train.py WORDLIST STEPS BATCH THREADS - the model of `d2nwg lm train` (4 pre-norm
# GPT-2 blocks, width 128, 4 heads, context 32, untied head) trained in PyTorch on the same
# kind of batch (words packed into rows of 32 bytes, positions restarting at each BOS, a
# block-diagonal causal mask), AdamW. Prints "tokens_per_s X" (bytes predicted per second,
# the figure `d2nwg lm train` prints) for bench_lm.sh. torch only.
import math, random, sys, time
import torch
F = torch.nn.functional
L, W, H, T = 4, 128, 4, 32

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(W), torch.nn.LayerNorm(W)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(W, W) for _ in range(4))
        self.fc_in, self.fc_out = torch.nn.Linear(W, 4 * W), torch.nn.Linear(4 * W, W)

    def forward(self, x, mask):
        B = x.shape[0]
        a = self.ln_1(x)
        q, k, v = (p(a).view(B, T, H, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        s = (q @ k.transpose(2, 3) / math.sqrt(W // H)).masked_fill(~mask[:, None], -1e30)
        x = x + self.o((s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, W))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln_2(x)), approximate="tanh"))

class LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(257, W), torch.nn.Embedding(T, W)
        self.h = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f, self.head = torch.nn.LayerNorm(W), torch.nn.Linear(W, 256, bias=False)

    def forward(self, ids, pos, mask):
        x = self.wte(ids) + self.wpe(pos)
        for b in self.h:
            x = b(x, mask)
        return self.head(self.ln_f(x))

def batch(words, B, rnd):
    ids = torch.full((B, T), 256, dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    lab = torch.full((B, T), -100, dtype=torch.long)
    seg = torch.arange(B * T).view(B, T) + 1000000
    row, col, n = 0, 0, 0
    while row < B:
        w = words[rnd.randrange(len(words))]
        if len(w) + 1 > T:
            continue
        if col + len(w) + 1 > T:
            row, col = row + 1, 0
            continue
        ids[row, col:col + len(w) + 1] = torch.tensor([256] + list(w))
        pos[row, col:col + len(w) + 1] = torch.arange(len(w) + 1)
        lab[row, col:col + len(w) + 1] = torch.tensor(list(w) + [10])
        seg[row, col:col + len(w) + 1] = n
        col, n = col + len(w) + 1, n + 1
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return ids, pos, lab, (seg[:, :, None] == seg[:, None, :]) & causal

words = [w for w in open(sys.argv[1], "rb").read().split(b"\n") if w]
steps, B, threads = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(1)
rnd = random.Random(1)
model = LM()
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
batches = [batch(words, B, rnd) for _ in range(steps)]
t0, tokens = time.time(), 0
for ids, pos, lab, mask in batches:
    loss = F.cross_entropy(model(ids, pos, mask).view(-1, 256), lab.view(-1), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    tokens += int((lab >= 0).sum())
print("tokens_per_s %.1f loss %.4f" % (tokens / (time.time() - t0), loss.item()))
