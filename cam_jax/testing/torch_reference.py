"""torch re-implementations of torchvision's VGG / ResNet and timm's ViT, for parity checks.

Built from torch's own layers with torchvision's (VGG, ResNet) and timm's (ViT) parameter names
and semantics, so a cam_jax model loaded with their state dict (``cam_jax.models.weights``) must
give the same logits; ``cam_jax bench`` also times them beside cam_jax, and trains them with
``train_step``, the torch twin of cam_jax's train step. Needs torch, which cam_jax itself does
not (``pip install -e '.[test]'`` brings it).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cam_jax.core.errors import BadInput
from cam_jax.train import optim


class TorchVGG(nn.Module):
  """torchvision.models.VGG: features, AdaptiveAvgPool2d((7, 7)), classifier (C,H,W flatten)."""

  def __init__(self, stages, batch_norm, num_classes, in_channels=3, hidden=4096):
    super().__init__()
    feats, cin = [], in_channels
    for stage in stages:
      for cout in stage:
        feats.append(nn.Conv2d(cin, cout, 3, padding=1))
        feats += [nn.BatchNorm2d(cout)] if batch_norm else []
        feats.append(nn.ReLU())
        cin = cout
      feats.append(nn.MaxPool2d(2, 2))
    self.features = nn.Sequential(*feats)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
        nn.Linear(cin * 49, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden),
        nn.ReLU(), nn.Dropout(), nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchBasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, width, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = downsample

  def forward(self, x):
    y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchBottleneck(nn.Module):
  """torchvision v1.5 bottleneck: the stride sits on the 3x3 conv."""
  expansion = 4

  def __init__(self, cin, width, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(width * 4)
    self.downsample = downsample

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn3(self.conv3(torch.relu(self.bn2(self.conv2(y)))))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
  """torchvision.models.ResNet: 7x7/2 stem, MaxPool2d(3, 2, 1), layer1..4, avg pool, fc."""

  def __init__(self, block, depths, widths, num_classes, in_channels=3):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(widths[0])
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = widths[0]
    for k, (depth, width, stride) in enumerate(zip(depths, widths, (1, 2, 2, 2)), start=1):
      blocks = []
      for j in range(depth):
        s, cout = (stride if j == 0 else 1), width * block.expansion
        down = (nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
                if s != 1 or cin != cout else None)
        blocks.append(block(cin, width, s, down))
        cin = cout
      setattr(self, f'layer{k}', nn.Sequential(*blocks))
    self.fc = nn.Linear(cin, num_classes)

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(x.mean(dim=(2, 3)))


class TorchAttention(nn.Module):
  """timm Attention: fused qkv (q|k|v, head-major), scale hd ** -0.5, proj."""

  def __init__(self, dim, heads):
    super().__init__()
    self.heads, self.scale = heads, (dim // heads) ** -0.5
    self.qkv = nn.Linear(dim, 3 * dim)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    b, n, d = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class TorchMlp(nn.Module):

  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class TorchBlock(nn.Module):

  def __init__(self, dim, heads):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-6)
    self.attn = TorchAttention(dim, heads)
    self.norm2 = nn.LayerNorm(dim, eps=1e-6)
    self.mlp = TorchMlp(dim, 4 * dim)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class TorchPatchEmbed(nn.Module):

  def __init__(self, in_channels, dim, patch):
    super().__init__()
    self.proj = nn.Conv2d(in_channels, dim, patch, patch)

  def forward(self, x):
    return self.proj(x).flatten(2).transpose(1, 2)


class TorchViT(nn.Module):
  """timm VisionTransformer (class token, learned pos_embed, pre-norm blocks, head on token 0)."""

  def __init__(self, image_size, patch, dim, depth, heads, num_classes, in_channels=3):
    super().__init__()
    self.patch_embed = TorchPatchEmbed(in_channels, dim, patch)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
    self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
    self.blocks = nn.Sequential(*[TorchBlock(dim, heads) for _ in range(depth)])
    self.norm = nn.LayerNorm(dim, eps=1e-6)
    self.head = nn.Linear(dim, num_classes)

  def forward(self, x):
    x = self.patch_embed(x)
    x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
    return self.head(self.norm(self.blocks(x))[:, 0])


def build(name: str, num_classes: int = 1000, image_size: int = 224,
          in_channels: int = 3) -> nn.Module:
  """The torch reference of registry model ``name``, torch's default init."""
  from cam_jax.models import registry  # pylint: disable=g-import-not-at-top
  registry.check_name(name)
  if name.startswith('vgg') and name[3:].split('_')[0] in map(str, registry.VGG_STAGES):
    depth = int(name[3:].split('_')[0])
    return TorchVGG(registry.VGG_STAGES[depth], name.endswith('_bn'), num_classes, in_channels)
  if name.startswith('resnet') and name[6:] in map(str, registry.RESNETS):
    block, depths = registry.RESNETS[int(name[6:])]
    torch_block = TorchBasicBlock if block.expansion == 1 else TorchBottleneck
    return TorchResNet(torch_block, depths, (64, 128, 256, 512), num_classes, in_channels)
  if name in registry.VITS:
    patch, dim, depth, heads = registry.VITS[name]
    return TorchViT(image_size, patch, dim, depth, heads, num_classes, in_channels)
  raise BadInput(f'no torch reference for {name!r}; the CPU-sized variants have none')


def init_as_source(model: nn.Module) -> nn.Module:
  """``model`` (from ``build``) re-initialised in place as its source library initialises it:
  torchvision's ``VGG.__init__`` (convs Kaiming-normal, fan-out, bias 0; linears N(0, 0.01),
  bias 0) and ``ResNet.__init__`` (convs Kaiming-normal, fan-out; its fc keeps torch's init), and
  timm's ``VisionTransformer.init_weights`` with its default mode (linears truncated N(0, 0.02),
  bias 0; ``pos_embed`` truncated N(0, 0.02); ``cls_token`` N(0, 1e-6)). torch's own default
  init leaves a deep VGG's last conv stage dominated by its biases, so every Grad-CAM map of
  VGG-16 at 224 px comes out constant."""
  vit = isinstance(model, TorchViT)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.Conv2d) and not vit:
        nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
        if module.bias is not None:
          nn.init.zeros_(module.bias)
      elif isinstance(module, nn.Linear) and vit:
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
      elif isinstance(module, nn.Linear) and isinstance(model, TorchVGG):
        nn.init.normal_(module.weight, 0, 0.01)
        nn.init.zeros_(module.bias)
    if vit:
      nn.init.trunc_normal_(model.pos_embed, std=0.02)
      nn.init.normal_(model.cls_token, std=1e-6)
  return model


def submodule(model: nn.Module, layer: str) -> nn.Module:
  """The submodule of a torch reference at a cam_jax layer name ('layer4', 'blocks.11.norm1')."""
  for part in layer.split('.'):
    model = model[int(part)] if part.isdigit() else getattr(model, part)
  return model


def relu_margins(model: nn.Module, layer: str, images: torch.Tensor) -> np.ndarray:
  """Per image, the least |input| of an ``nn.ReLU`` of ``model`` that runs after ``layer`` (a
  cam_jax layer name) in a forward pass of ``images``, over that ReLU's mean |input| (inf where
  none runs after it): how near the gradient of the output with respect to ``layer`` is to a
  ReLU's branch. The references' ReLUs behind a default CAM layer are modules (VGG's
  classifier); ResNet's layer4 and a ViT's last norm1 have none behind them."""
  seen, margins = [False], []

  def relu(module, inputs, output):
    del module, output
    if seen[0]:
      x = inputs[0].detach().abs().flatten(1)
      margins.append((x.min(1).values / x.mean(1)).numpy())

  # the ReLUs' hooks first: a ReLU that is the layer itself runs before, not after, the layer
  hooks = [m.register_forward_hook(relu) for m in model.modules() if isinstance(m, nn.ReLU)]
  hooks.append(submodule(model, layer).register_forward_hook(
      lambda *_: seen.__setitem__(0, True)))
  try:
    with torch.no_grad():
      model(images)
  finally:
    for hook in hooks:
      hook.remove()
  return np.min(margins, axis=0) if margins else np.full(len(images), np.inf)


def token_reshape(grid: int):
  """pytorch-grad-cam's ``reshape_transform`` for a ViT on a ``grid`` x ``grid`` patch grid:
  tokens (B, 1 + g*g, C) -> (B, C, g, g), the class token dropped (its ViT tutorial's)."""
  def reshape(tokens):
    return tokens[:, 1:, :].reshape(tokens.shape[0], grid, grid, tokens.shape[-1]).permute(
        0, 3, 1, 2)
  return reshape


def train_step(model: nn.Module, train_config, total_steps: int, dtype=torch.float32):
  """``step(images, labels) -> loss``: one torch training step of a one-logit ``model`` as
  cam_jax's (``cam_jax.train.step.make_train_step`` with ``cam_jax.train.optim.optimizer`` and
  unweighted classes): mean binary cross-entropy, AdamW with the same learning-rate schedule,
  decay mask and hyper-parameters, computing in ``dtype`` (bfloat16 by autocast, parameters and
  optimiser state float32). ``model`` is put in training mode."""
  if train_config.optimizer != 'adamw':
    raise BadInput(f'the torch train step runs adamw, not {train_config.optimizer!r}')
  model.train()
  named = list(model.named_parameters())
  wd = train_config.weight_decay
  opt = torch.optim.AdamW(
      [{'params': [p for n, p in named if optim.decays(n, p.ndim)], 'weight_decay': wd},
       {'params': [p for n, p in named if not optim.decays(n, p.ndim)], 'weight_decay': 0.0}],
      lr=train_config.learning_rate, betas=(0.9, 0.999), eps=1e-8)
  rates = np.asarray(optim.schedule(train_config, total_steps)(np.arange(total_steps)))
  device = next(model.parameters()).device
  done = [0]

  def step(images, labels):
    for group in opt.param_groups:
      group['lr'] = float(rates[min(done[0], total_steps - 1)])
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
      logits = model(images)
    loss = F.binary_cross_entropy_with_logits(logits.float()[:, 0], labels.float())
    loss.backward()
    opt.step()
    done[0] += 1
    return loss.detach()

  return step
