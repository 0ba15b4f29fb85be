"""Feasibility probe: oneDNN's depthwise convolution called through jax.ffi.

Not used by jaxdarts. It answers issue 22's questions: is a oneDNN wheel on
PyPI (yes: ``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp`` 2023.2.0 are
oneDNN v3.2 built with GNU OpenMP and need nothing but libgomp; the newer
``onednn`` 2024-2026 wheels are the SYCL build and need Intel's DPC++, TBB
and OpenCL runtimes), does a minimal C++ FFI extension build with the
system compiler (``depthwise_dnnl.cc``: forward and kernel gradient), is it
equal to ``lax.conv_general_dilated``, and how fast is it against XLA:CPU's
grouped convolution and jaxdarts's shift primitive::

    pip download onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0 \\
        --no-deps -d /tmp/onednn_whl
    mkdir /tmp/onednn && for w in /tmp/onednn_whl/*.whl; do \\
        python3 -m zipfile -e $w /tmp/onednn; done
    python benchmarks/onednn_ffi/probe.py --onednn=/tmp/onednn

The input gradient (a forward convolution with the flipped kernel at stride
1), forward-over-reverse and vmap rules are not written: see
benchmarks/RESULTS.md for what wiring it into the library would take.
"""

import ctypes
import glob
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_string('onednn', None, 'Where the two oneDNN wheels were '
                    'unpacked (holds */data/include and */data/lib).')
flags.DEFINE_string('build_dir', '/tmp/onednn_ffi_build', 'Build output.')
flags.DEFINE_integer('repeats', 15, 'Timed calls per implementation.')
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))


def build() -> str:
  """Compiles depthwise_dnnl.cc with the system g++; returns the library."""
  import jax.ffi  # pylint: disable=g-import-not-at-top
  include = glob.glob(os.path.join(FLAGS.onednn, '*', 'data', 'include'))
  lib = glob.glob(os.path.join(FLAGS.onednn, '*', 'data', 'lib'))
  if not include or not lib:
    raise SystemExit(f'--onednn={FLAGS.onednn}: no */data/include and '
                     '*/data/lib; unpack both wheels there (see the '
                     'docstring).')
  lib = lib[0]
  if not os.path.exists(os.path.join(lib, 'libdnnl.so')):
    os.symlink('libdnnl.so.3', os.path.join(lib, 'libdnnl.so'))
  os.makedirs(FLAGS.build_dir, exist_ok=True)
  out = os.path.join(FLAGS.build_dir, 'libdepthwise_dnnl.so')
  cmd = ['g++', '-O2', '-shared', '-fPIC', '-std=c++17', '-w',
         f'-I{jax.ffi.include_dir()}', f'-I{include[0]}',
         os.path.join(HERE, 'depthwise_dnnl.cc'), f'-L{lib}', '-ldnnl',
         f'-Wl,-rpath,{lib}', '-o', out]
  start = time.perf_counter()
  subprocess.run(cmd, check=True)
  print(f'built with {" ".join(cmd[:5])} ... in '
        f'{time.perf_counter() - start:.1f} s')
  return out


def main(argv):
  del argv
  sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxdarts.spaces.darts_cnn.depthwise import depthwise_conv  # pylint: disable=g-import-not-at-top

  library = ctypes.cdll.LoadLibrary(build())
  for name in ('DnnlDepthwise', 'DnnlDepthwiseKernelGrad'):
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)),
                                platform='cpu')

  def dnnl_forward(x, w, stride=1, dilation=1):
    n, h, wd, c = x.shape
    out = jax.ShapeDtypeStruct(
        (n, (h - 1) // stride + 1, (wd - 1) // stride + 1, c), x.dtype)
    return jax.ffi.ffi_call('DnnlDepthwise', out)(
        x, w, stride=np.int64(stride), dilation=np.int64(dilation))

  def dnnl_kernel_grad(x, dy, k, stride=1, dilation=1):
    out = jax.ShapeDtypeStruct((k, k, x.shape[-1]), x.dtype)
    return jax.ffi.ffi_call('DnnlDepthwiseKernelGrad', out)(
        x, dy, stride=np.int64(stride), dilation=np.int64(dilation))

  def library_conv(x, w, stride=1, dilation=1):
    pad = dilation * (w.shape[0] - 1) // 2
    return jax.lax.conv_general_dilated(
        x, w[:, :, None, :], (stride, stride), [(pad, pad)] * 2,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=x.shape[-1])

  rng = np.random.default_rng(0)
  forward_err = kernel_err = 0.
  for k in (3, 5, 7):
    for s in (1, 2):
      for d in (1, 2):
        x = jnp.asarray(rng.normal(size=(2, 9, 10, 6)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(k, k, 6)), jnp.float32)
        y, vjp = jax.vjp(lambda w: library_conv(x, w, s, d), w)  # pylint: disable=cell-var-from-loop
        dy = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
        got = jax.jit(dnnl_forward, static_argnums=(2, 3))(x, w, s, d)
        forward_err = max(forward_err, float(jnp.max(jnp.abs(got - y))))
        got = jax.jit(dnnl_kernel_grad, static_argnums=(2, 3, 4))(
            x, dy, k, s, d)
        kernel_err = max(kernel_err,
                         float(jnp.max(jnp.abs(got - vjp(dy)[0]))))
  print(f'max |error| against lax.conv_general_dilated (k 3/5/7, strides '
        f'1/2, dilations 1/2): forward {forward_err:.1e}, kernel gradient '
        f'{kernel_err:.1e}')

  x = jnp.asarray(rng.normal(size=(16, 32, 32, 64)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 64)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

  def kernel_grad(conv):
    return lambda x, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]

  shift = lambda x, w: depthwise_conv(x, w, impl='shift')
  programs = {
      ('forward', 'oneDNN via jax.ffi'): (dnnl_forward, (x, w)),
      ('forward', 'XLA grouped conv'): (library_conv, (x, w)),
      ('forward', 'jaxdarts shift'): (shift, (x, w)),
      ('kernel gradient', 'oneDNN via jax.ffi'):
          (lambda x, dy: dnnl_kernel_grad(x, dy, 3), (x, dy)),
      ('kernel gradient', 'XLA grouped conv'):
          (kernel_grad(library_conv), (x, dy)),
      ('kernel gradient', 'jaxdarts shift'): (kernel_grad(shift), (x, dy)),
  }
  programs = {key: (jax.jit(f), args) for key, (f, args) in programs.items()}
  times = {key: [] for key in programs}
  for f, args in programs.values():
    f(*args).block_until_ready()
  for _ in range(FLAGS.repeats):  # Interleaved, so load hits all alike.
    for key, (f, args) in programs.items():
      start = time.perf_counter()
      f(*args).block_until_ready()
      times[key].append(time.perf_counter() - start)
  print('3x3 depthwise on [16, 32, 32, 64], ms: median (min) of '
        f'{FLAGS.repeats}')
  for (what, impl), t in times.items():
    print(f'  {what:<16} {impl:<20} {1e3 * statistics.median(t):7.2f} '
          f'({1e3 * min(t):.2f})')


if __name__ == '__main__':
  app.run(main)
