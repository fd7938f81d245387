"""The public PyTorch EBGAN's training iteration, for timing beside the JAX step in one run.

Transcribed from eriklindernoren/PyTorch-GAN (MIT licence), `implementations/ebgan/ebgan.py`: the
same networks (32x32 grayscale, latent 62) and initialisation (`weights_init_normal`: N(0, 0.02)
convolution weights, N(1, 0.02) scales of the 2-D batch norms), Adam 2e-4 with betas (0.5, 0.999),
margin max(1, batch / 64), lambda_pt 0.1, and one iteration as that script runs it: the generator
update on fresh normal latents, then the discriminator update on the same (detached) samples, with
the hinge applied only when the batch's fake reconstruction error is below the margin (a `.item()`
sync, as there). Nothing here is used by the library; `benchmarks.ebgan_step` imports it only
where torch is installed (it is not a dependency).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn


class Generator(nn.Module):
  """Linear(nz -> 128 x s/4 x s/4), 2 x [upsample, conv3x3, BN(eps 0.8), leaky ReLU], conv, tanh."""

  def __init__(self, image_size: int = 32, channels: int = 1, latent_dim: int = 62):
    super().__init__()
    self.init_size = image_size // 4
    self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * self.init_size ** 2))
    self.conv_blocks = nn.Sequential(
        nn.Upsample(scale_factor=2),
        nn.Conv2d(128, 128, 3, stride=1, padding=1),
        nn.BatchNorm2d(128, 0.8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(128, 64, 3, stride=1, padding=1),
        nn.BatchNorm2d(64, 0.8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(64, channels, 3, stride=1, padding=1),
        nn.Tanh(),
    )

  def forward(self, noise):
    out = self.l1(noise)
    out = out.view(out.shape[0], 128, self.init_size, self.init_size)
    return self.conv_blocks(out)


class Discriminator(nn.Module):
  """Conv3x3 stride 2 + ReLU, Linear to 32, BN, ReLU, Linear back, BN, ReLU, upsample, conv3x3."""

  def __init__(self, image_size: int = 32, channels: int = 1):
    super().__init__()
    self.down = nn.Sequential(nn.Conv2d(channels, 64, 3, 2, 1), nn.ReLU())
    self.down_size = image_size // 2
    down_dim = 64 * (image_size // 2) ** 2
    self.embedding = nn.Linear(down_dim, 32)
    self.fc = nn.Sequential(
        nn.BatchNorm1d(32, 0.8),
        nn.ReLU(inplace=True),
        nn.Linear(32, down_dim),
        nn.BatchNorm1d(down_dim),
        nn.ReLU(inplace=True),
    )
    self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(64, channels, 3, 1, 1))

  def forward(self, img):
    out = self.down(img)
    embedding = self.embedding(out.view(out.size(0), -1))
    out = self.fc(embedding)
    out = self.up(out.view(out.size(0), 64, self.down_size, self.down_size))
    return out, embedding


def weights_init_normal(m):
  """That script's initialisation, applied with `module.apply`."""
  classname = m.__class__.__name__
  if classname.find("Conv") != -1:
    torch.nn.init.normal_(m.weight.data, 0.0, 0.02)
  elif classname.find("BatchNorm2d") != -1:
    torch.nn.init.normal_(m.weight.data, 1.0, 0.02)
    torch.nn.init.constant_(m.bias.data, 0.0)


def pullaway_loss(embeddings):
  """That script's PT: the mean off-diagonal cosine similarity (not squared there)."""
  norm = torch.sqrt(torch.sum(embeddings ** 2, -1, keepdim=True))
  normalized = embeddings / norm
  similarity = torch.matmul(normalized, normalized.transpose(1, 0))
  batch_size = embeddings.size(0)
  return (torch.sum(similarity) - batch_size) / (batch_size * (batch_size - 1))


def time_iterations(batch_size: int = 64, steps: int = 5, image_size: int = 32,
                    latent_dim: int = 62, seed: int = 0) -> dict:
  """Times that script's iteration: one warm-up, then the median of `steps`, each on fresh images.

  Returns:
    `{"step_s": median seconds per iteration, "batch": batch_size, "threads": torch threads}`.
  """
  if steps < 1:
    raise ValueError(f"steps: {steps} must be a positive integer")
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  generator, discriminator = Generator(image_size, 1, latent_dim), Discriminator(image_size, 1)
  generator.apply(weights_init_normal)
  discriminator.apply(weights_init_normal)
  pixelwise_loss = nn.MSELoss()
  optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
  optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
  lambda_pt, margin = 0.1, max(1, batch_size / 64.0)

  def iteration(real_imgs):
    optimizer_g.zero_grad()
    z = torch.from_numpy(rng.normal(0, 1, (batch_size, latent_dim)).astype(np.float32))
    gen_imgs = generator(z)
    recon_imgs, img_embeddings = discriminator(gen_imgs)
    g_loss = (pixelwise_loss(recon_imgs, gen_imgs.detach())
              + lambda_pt * pullaway_loss(img_embeddings))
    g_loss.backward()
    optimizer_g.step()

    optimizer_d.zero_grad()
    real_recon, _ = discriminator(real_imgs)
    fake_recon, _ = discriminator(gen_imgs.detach())
    d_loss = pixelwise_loss(real_recon, real_imgs)
    d_loss_fake = pixelwise_loss(fake_recon, gen_imgs.detach())
    if (margin - d_loss_fake.data).item() > 0:
      d_loss = d_loss + margin - d_loss_fake
    d_loss.backward()
    optimizer_d.step()

  def images():
    return torch.from_numpy(
        rng.uniform(-1, 1, (batch_size, 1, image_size, image_size)).astype(np.float32))

  iteration(images())
  times = []
  for _ in range(steps):
    real = images()
    t0 = time.perf_counter()
    iteration(real)
    times.append(time.perf_counter() - t0)
  return {"step_s": statistics.median(times), "batch": batch_size,
          "threads": torch.get_num_threads()}
