// Feasibility probe: oneDNN depthwise convolutions as XLA FFI handlers
// (benchmarks/onednn_ffi/probe.py builds and checks it; not used by jaxdarts).
// Forward: x [N,H,W,C], w [k,k,C] -> y [N,Ho,Wo,C], 'same' padding.
#include <cstdint>
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

static dnnl::engine& Engine() { static dnnl::engine e(dnnl::engine::kind::cpu, 0); return e; }

static ffi::Error DwImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                         ffi::ResultBuffer<ffi::F32> y, int64_t stride,
                         int64_t dilation) {
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  const int64_t n = xd[0], h = xd[1], wi = xd[2], c = xd[3], k = wd[0];
  const int64_t ho = yd[1], wo = yd[2], pad = dilation * (k - 1) / 2;
  auto& eng = Engine();
  dnnl::stream s(eng);
  memory::desc src({n, c, h, wi}, memory::data_type::f32, memory::format_tag::nhwc);
  memory::desc dst({n, c, ho, wo}, memory::data_type::f32, memory::format_tag::nhwc);
  // Grouped weights (g, o, i, kh, kw) stored as [kh][kw][g].
  memory::desc wts_user({c, 1, 1, k, k}, memory::data_type::f32,
                        memory::dims{1, 1, 1, k * c, c});
  memory::desc wts_any({c, 1, 1, k, k}, memory::data_type::f32, memory::format_tag::any);
  auto pd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      src, wts_any, dst, {stride, stride}, {dilation - 1, dilation - 1},
      {pad, pad}, {pad, pad});
  memory src_m(src, eng, x.typed_data()), dst_m(dst, eng, y->typed_data());
  memory wu(wts_user, eng, w.typed_data()), wm = wu;
  if (pd.weights_desc() != wts_user) {
    wm = memory(pd.weights_desc(), eng);
    dnnl::reorder(wu, wm).execute(s, wu, wm);
  }
  dnnl::convolution_forward(pd).execute(
      s, {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst_m}});
  s.wait();
  return ffi::Error::Success();
}

// Kernel gradient: x [N,H,W,C], dy [N,Ho,Wo,C] -> dw [k,k,C].
static ffi::Error DwKernelGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                                   ffi::ResultBuffer<ffi::F32> dw, int64_t stride,
                                   int64_t dilation) {
  auto xd = x.dimensions(), wd = dw->dimensions(), yd = dy.dimensions();
  const int64_t n = xd[0], h = xd[1], wi = xd[2], c = xd[3], k = wd[0];
  const int64_t ho = yd[1], wo = yd[2], pad = dilation * (k - 1) / 2;
  auto& eng = Engine();
  dnnl::stream s(eng);
  memory::desc src({n, c, h, wi}, memory::data_type::f32, memory::format_tag::nhwc);
  memory::desc dst({n, c, ho, wo}, memory::data_type::f32, memory::format_tag::nhwc);
  memory::desc wts_user({c, 1, 1, k, k}, memory::data_type::f32,
                        memory::dims{1, 1, 1, k * c, c});
  memory::desc wts_any({c, 1, 1, k, k}, memory::data_type::f32, memory::format_tag::any);
  auto fwd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      src, wts_any, dst, {stride, stride}, {dilation - 1, dilation - 1},
      {pad, pad}, {pad, pad});
  auto pd = dnnl::convolution_backward_weights::primitive_desc(
      eng, dnnl::algorithm::convolution_direct, src, wts_any, dst,
      {stride, stride}, {dilation - 1, dilation - 1}, {pad, pad}, {pad, pad}, fwd);
  memory src_m(src, eng, x.typed_data()), dy_m(dst, eng, dy.typed_data());
  memory wu(wts_user, eng, dw->typed_data()), wm = wu;
  bool reorder = pd.diff_weights_desc() != wts_user;
  if (reorder) wm = memory(pd.diff_weights_desc(), eng);
  dnnl::convolution_backward_weights(pd).execute(
      s, {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_DIFF_DST, dy_m}, {DNNL_ARG_DIFF_WEIGHTS, wm}});
  if (reorder) dnnl::reorder(wm, wu).execute(s, wm, wu);
  s.wait();
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(DnnlDepthwiseKernelGrad, DwKernelGradImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("dilation"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(DnnlDepthwise, DwImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("dilation"));
