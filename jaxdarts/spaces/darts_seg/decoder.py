"""The light segmentation decoder shared by the supernet and the network.

In the spirit of DeepLabv3+ (Chen et al., ECCV 2018), the decoder
Auto-DeepLab puts on its searched backbones (Liu et al., CVPR 2019), at
this library's small scale: an ASPP-like head on the stride-8 features (a
1x1 branch, a 3x3 branch of dilation 2 and an image-pooling branch,
concatenated and projected by a 1x1 convolution), upsampled bilinearly to
stride 4, concatenated with a 1x1 projection of the stride-4 features, a
3x3 convolution and a 1x1 classifier. The logits stay at stride 4; the
task (:mod:`jaxdarts.tasks.segmentation`) upsamples them to the labels.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdarts.spaces.darts_cnn import ops


class SegDecoder(nn.Module):
  """Stride-8 and stride-4 features -> logits ``[N, H / 4, W / 4, K]``.

  Attributes:
    num_classes: classes K.
    channels: width of every decoder convolution (the skip: half of it).
    bn_axis_name: average BatchNorm statistics over this mapped axis.
  """
  num_classes: int
  channels: int
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, high: jax.Array, low: jax.Array, train: bool):
    c, bn = self.channels, self.bn_axis_name

    def conv_bn_relu(x, features, kernel, name, dilation=1):
      x = nn.Conv(features, (kernel, kernel), padding=dilation * (kernel // 2),
                  kernel_dilation=dilation, use_bias=False,
                  kernel_init=ops.torch_conv_init, name=f'{name}_conv')(x)
      return nn.relu(ops.batch_norm(train, True, bn, name=f'{name}_bn')(x))

    # No BatchNorm on the pooled branch: one value per image and channel.
    pooled = nn.relu(nn.Conv(c, (1, 1), kernel_init=ops.torch_conv_init,
                             name='aspp_pool_conv')(
                                 jnp.mean(high, (1, 2), keepdims=True)))
    x = jnp.concatenate([
        conv_bn_relu(high, c, 1, 'aspp_1x1'),
        conv_bn_relu(high, c, 3, 'aspp_3x3', dilation=2),
        jnp.broadcast_to(pooled, high.shape[:3] + (c,))], axis=-1)
    x = conv_bn_relu(x, c, 1, 'aspp_project')
    x = jax.image.resize(x, x.shape[:1] + low.shape[1:3] + x.shape[3:],
                         'bilinear')
    skip = conv_bn_relu(low, max(c // 2, 1), 1, 'skip')
    x = conv_bn_relu(jnp.concatenate([x, skip], axis=-1), c, 3, 'fuse')
    return nn.Conv(self.num_classes, (1, 1), kernel_init=ops.torch_conv_init,
                   name='classifier')(x)
