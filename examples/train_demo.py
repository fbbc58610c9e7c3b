# A tiny training loop in percent cells: edit the last cell and save while `devloop watch` runs --
# only that cell reruns, the data and the trained weights stay in the kernel.

# %% Load data
import math
import random
import time

random.seed(0)
xs = [i / 100 for i in range(200)]
ys = [2.5 * x + 0.7 + random.gauss(0, 0.05) for x in xs]
time.sleep(0.5)  # stands in for a slow data load
print(f"loaded {len(xs)} points")

# %% Train
w, b, lr = 0.0, 0.0, 0.1
for epoch in range(200):
    gw = sum(2 * (w * x + b - y) * x for x, y in zip(xs, ys)) / len(xs)
    gb = sum(2 * (w * x + b - y) for x, y in zip(xs, ys)) / len(xs)
    w, b = w - lr * gw, b - lr * gb
    if epoch % 50 == 0:
        loss = sum((w * x + b - y) ** 2 for x, y in zip(xs, ys)) / len(xs)
        print(f"epoch {epoch:3d}  loss {loss:.4f}")

# %% Evaluate
rmse = math.sqrt(sum((w * x + b - y) ** 2 for x, y in zip(xs, ys)) / len(xs))
print(f"w={w:.3f} b={b:.3f} rmse={rmse:.4f}")
