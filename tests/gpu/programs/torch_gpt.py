# A small GPT-style language model trained for some steps: nn.TransformerEncoder blocks with a causal
# mask, scaled-dot-product attention, bf16 autocast and fused AdamW; prints rounded losses so that
# the run through RGPU can be compared with the native run. `--bench N` prints the median step time.
import torch
import torch.nn as nn
import torch.nn.functional as F
from step_timer import bench_requested, print_median_step

torch.manual_seed(0)
dev = torch.device("cuda")
vocab, width, heads, layers, context, batch = 512, 256, 8, 4, 128, 16


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, width))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention()
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        self.blocks = nn.Sequential(*[Block() for _ in range(layers - 2)])
        # Two blocks of PyTorch's own encoder layer, as a real model mixes both.
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        x = self.blocks(x)
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1], device=tokens.device)
        x = self.encoder(x, mask=mask, is_causal=True)
        return self.head(x)


model = Gpt().to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
# A text the model can learn: a repeating pattern with noise.
data = (torch.arange(batch * (context + 1), device=dev).view(batch, context + 1) * 7 % vocab)


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), data[:, 1:].reshape(-1))
    loss.backward()
    opt.step()
    return loss


if bench_requested():
    print_median_step("gpt", step)
else:
    print("device", torch.cuda.get_device_name(0))
    for i in range(30):
        loss = step()
        if i % 10 == 9:
            print("step", i + 1, "loss", f"{loss.item():.2f}")
    print("learned", loss.item() < 6.0)
