# torch.compile(mode="reduce-overhead"): Triton kernels replayed through CUDA graphs; prints rounded results.
import torch

torch.manual_seed(0)
dev = torch.device("cuda")
model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.GELU(), torch.nn.Linear(256, 16)).to(dev)
compiled = torch.compile(model, mode="reduce-overhead")
x = torch.randn(64, 128, device=dev)
with torch.no_grad():
    for _ in range(5):
        y = compiled(x)
    expected = model(x)
print("matches eager", torch.allclose(y, expected, atol=1e-3, rtol=1e-3))
print("sum", f"{y.sum().item():.2f}")
