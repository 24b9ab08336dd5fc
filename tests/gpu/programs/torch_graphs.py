# CUDA graphs through PyTorch: a whole training step captured with torch.cuda.graph and replayed,
# and a captured device-to-host copy into pinned memory; prints rounded results.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
dev = torch.device("cuda")
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 1)).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
static_x = torch.randn(256, 64, device=dev)
static_y = static_x[:, :1].sin()

# Warm up on a side stream, as the PyTorch documentation says, then capture.
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(static_x), static_y).backward()
        opt.step()
torch.cuda.current_stream().wait_stream(side)

graph = torch.cuda.CUDAGraph()
opt.zero_grad(set_to_none=True)
with torch.cuda.graph(graph):
    static_loss = F.mse_loss(model(static_x), static_y)
    static_loss.backward()
    opt.step()

losses = []
for _ in range(20):
    graph.replay()
    losses.append(static_loss.item())
print("replayed losses", " ".join(f"{v:.4f}" for v in losses[::5]))
print("learned", losses[-1] < losses[0])

# A device-to-host copy inside a graph.
src = torch.arange(1024, device=dev, dtype=torch.float32)
host = torch.empty(1024, dtype=torch.float32, pin_memory=True)
copy_graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(copy_graph):
    doubled = src * 2
    host.copy_(doubled, non_blocking=True)
src.add_(1)
copy_graph.replay()
torch.cuda.synchronize()
print("captured copy", host[:4].tolist(), float(host.sum()))
