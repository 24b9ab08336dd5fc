# PyTorch through RGPU: tensors, a matmul and a few training steps of a small MLP; prints rounded
# results so that the run through RGPU can be compared with the native run.
import torch

torch.manual_seed(0)
dev = torch.device("cuda")
print("device", torch.cuda.get_device_name(0), torch.cuda.device_count())
a = torch.randn(256, 256, device=dev)
b = torch.randn(256, 256, device=dev)
print("matmul", f"{(a @ b).abs().sum().item():.4e}")

x = torch.randn(1024, 32, device=dev)
y = (x[:, :1] * 2 - x[:, 1:2]).sin()
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(20):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if step % 5 == 4:
        print("step", step + 1, "loss", f"{loss.item():.5f}")
print("weights", f"{model[0].weight.sum().item():.4f}")
