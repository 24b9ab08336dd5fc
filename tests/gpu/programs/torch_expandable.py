# PyTorch's expandable_segments allocator (virtual memory management: reserve, create, map, access).
import os

os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
import torch  # noqa: E402

torch.manual_seed(0)
dev = torch.device("cuda")
tensors = [torch.full((n * 1024 * 256,), float(n), device=dev) for n in range(1, 9)]
print("sums", [int(t.sum().item()) for t in tensors])
del tensors[::2]
grown = torch.ones(64 * 1024 * 1024, device=dev)
a = torch.randn(512, 512, device=dev)
print("matmul", f"{(a @ a).abs().sum().item():.4e}", int(grown.sum().item()))
torch.cuda.empty_cache()
print("reserved after empty_cache", torch.cuda.memory_reserved() > 0)
