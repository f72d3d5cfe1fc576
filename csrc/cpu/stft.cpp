// Batch and streaming STFT / iSTFT drivers: framing, padding, threading, overlap-add.
// The arithmetic of one frame lives in the FFT frame kernels (fft_kernels.h).
#include "sonicore/stft.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "sonicore/common.h"
#include "sonicore/parallel.h"

namespace sonicore {
namespace stft {
namespace {

constexpr double kNolaEps = 1e-11;  // torch.istft's threshold on the window envelope

const char* kNolaMessage =
    "the window does not satisfy the overlap-add condition (NOLA): the summed squared window "
    "is <= 1e-11 at some output sample; expected a window and hop whose overlapping squared "
    "windows are > 1e-11 everywhere (e.g. Hann with hop <= n_fft/2)";

template <class T>
void split_window(const T* w, int64_t n, std::vector<T>& even, std::vector<T>& odd) {
  even.resize(static_cast<size_t>(n / 2));
  odd.resize(static_cast<size_t>(n / 2));
  for (int64_t j = 0; j < n / 2; ++j) {
    even[size_t(j)] = w[2 * j];
    odd[size_t(j)] = w[2 * j + 1];
  }
}

// The frame of the padded signal that starts at signal index `start` (may be < 0 or run past
// the end). data[i] holds sample first + i; samples [first, S) exist. Interior frames are read
// in place; edge frames are assembled in tmp with reflect / zero padding.
template <class T>
const T* padded_frame(const T* data, int64_t first, int64_t S, int64_t start, int64_t n,
                      PadMode mode, T* tmp) {
  if (start >= first && start + n <= S) return data + (start - first);
  for (int64_t i = 0; i < n; ++i) {
    int64_t j = start + i;
    bool inside = true;
    if (j < 0) {
      if (mode == PadMode::reflect) j = -j;
      else inside = false;
    } else if (j >= S) {
      if (mode == PadMode::reflect) j = 2 * (S - 1) - j;
      else inside = false;
    }
    if (inside && (j < first || j >= S)) throw std::logic_error("sonicore stft: frame outside the kept samples");
    tmp[i] = inside ? data[j - first] : T(0);
  }
  return tmp;
}

// Bins (re at p[k*sf], im next to it) into split arrays. Contiguous complex bins (sf == 2, the
// layout torch.stft returns) take a loop the compiler vectorises.
template <class T>
void gather_bins(const T* p, int64_t sf, int64_t count, T* re, T* im) {
  if (sf == 2) {
    for (int64_t k = 0; k < count; ++k) {
      re[k] = p[2 * k];
      im[k] = p[2 * k + 1];
    }
  } else {
    for (int64_t k = 0; k < count; ++k) {
      re[k] = p[k * sf];
      im[k] = p[k * sf + 1];
    }
  }
}

fft::ForwardOptions forward_options(const StftParams& p) {
  fft::ForwardOptions o;
  o.output = p.output;
  o.onesided = p.onesided;
  o.scale = p.normalized ? 1.0 / std::sqrt(double(p.n_fft)) : 1.0;
  o.magnitude_eps = p.magnitude_eps;
  o.log_floor = p.log_floor;
  return o;
}

// Summed squared window at padded sample j, frames added in frame order (as a stream does).
template <class T>
T envelope_at(const std::vector<T>& w2, int64_t n, int64_t hop, int64_t frames, int64_t j) {
  int64_t t_lo = j - n + 1 <= 0 ? 0 : (j - n + 1 + hop - 1) / hop;
  int64_t t_hi = std::min(frames - 1, j / hop);
  T acc = T(0);
  for (int64_t t = t_lo; t <= t_hi; ++t) acc += w2[size_t(j - t * hop)];
  return acc;
}

}  // namespace

int64_t num_bins(const StftParams& p) { return p.onesided ? p.n_fft / 2 + 1 : p.n_fft; }
int64_t row_size(const StftParams& p) {
  return p.output == fft::Output::complex ? 2 * num_bins(p) : num_bins(p);
}

void check_params(const StftParams& p) {
  SONICORE_CHECK(p.n_fft >= 2 && p.n_fft % 2 == 0,
                 "n_fft must be even and >= 2, got " + std::to_string(p.n_fft));
  SONICORE_CHECK(p.hop >= 1, "hop_length must be >= 1, got " + std::to_string(p.hop));
  SONICORE_CHECK(p.magnitude_eps >= 0, "magnitude_eps must be >= 0");
  SONICORE_CHECK(p.log_floor > 0, "log_floor must be > 0");
  int out = int(p.output);
  SONICORE_CHECK(out >= 0 && out <= 3, "output must be complex, magnitude, power or log_magnitude");
  int pad = int(p.pad_mode);
  SONICORE_CHECK(pad == 0 || pad == 1, "pad_mode must be reflect or constant");
}

void check_params(const IstftParams& p) {
  SONICORE_CHECK(p.n_fft >= 2 && p.n_fft % 2 == 0,
                 "n_fft must be even and >= 2, got " + std::to_string(p.n_fft));
  SONICORE_CHECK(p.hop >= 1 && p.hop <= p.n_fft,
                 "hop_length must be in [1, n_fft], got " + std::to_string(p.hop));
}

int64_t num_frames(int64_t samples, const StftParams& p) {
  SONICORE_CHECK(samples >= 1, "the signal is empty; expected at least one sample");
  int64_t padded = samples;
  if (p.center) {
    const int64_t pad = p.n_fft / 2;
    SONICORE_CHECK(p.pad_mode != PadMode::reflect || samples > pad,
                   "reflect padding needs more than n_fft // 2 = " + std::to_string(pad) +
                       " samples, got " + std::to_string(samples) +
                       "; pass a longer signal or pad_mode='constant'");
    padded += 2 * pad;
  } else {
    SONICORE_CHECK(samples >= p.n_fft, "with center=False the signal must have at least n_fft = " +
                                           std::to_string(p.n_fft) + " samples, got " +
                                           std::to_string(samples));
  }
  return 1 + (padded - p.n_fft) / p.hop;
}

int64_t istft_length(int64_t frames, const IstftParams& p) {
  return p.n_fft + p.hop * (frames - 1) - (p.center ? 2 * (p.n_fft / 2) : 0);
}

// ------------------------------------------------------------------------ batch STFT

template <class T>
void stft(const T* x, int64_t batch, int64_t samples, const T* window, const StftParams& p, T* out) {
  check_params(p);
  const int64_t frames = num_frames(samples, p);
  const int64_t n = p.n_fft, row = row_size(p), pad = p.center ? n / 2 : 0;
  auto plan = fft::real_plan<T>(n);
  std::vector<T> we, wo;
  split_window(window, n, we, wo);
  const fft::ForwardOptions opt = forward_options(p);
  parallel_for(batch * frames, 8, [&](int64_t b, int64_t e) {
    std::vector<T> work(static_cast<size_t>(fft::work_size(*plan))), tmp(static_cast<size_t>(n));
    for (int64_t i = b; i < e; ++i) {
      const int64_t bi = i / frames, t = i % frames;
      const T* f = padded_frame(x + bi * samples, 0, samples, t * p.hop - pad, n, p.pad_mode, tmp.data());
      fft::forward_frame(*plan, f, we.data(), wo.data(), opt, out + i * row, work.data());
    }
  });
}

// ------------------------------------------------------------------------ batch iSTFT

template <class T>
void istft(const T* spec, int64_t batch, int64_t bins, int64_t frames, int64_t sb, int64_t sf,
           int64_t st, const T* window, const IstftParams& p, T* out, int64_t length) {
  check_params(p);
  const int64_t n = p.n_fft, hop = p.hop, M = n / 2;
  SONICORE_CHECK(bins >= M + 1, "the spectrum needs n_fft / 2 + 1 = " + std::to_string(M + 1) +
                                    " bins, got " + std::to_string(bins));
  SONICORE_CHECK(frames >= 1, "the spectrum has no frames");
  SONICORE_CHECK(length >= 0, "length must be >= 0");
  const int64_t full = n + hop * (frames - 1), trim = p.center ? n / 2 : 0;
  const int64_t valid_end = std::min(trim + length, full);  // padded index past the last OLA sample
  auto plan = fft::real_plan<T>(n);
  std::vector<T> we, wo, w2(static_cast<size_t>(n));
  split_window(window, n, we, wo);
  for (int64_t i = 0; i < n; ++i) w2[size_t(i)] = window[i] * window[i];

  // Window envelope (summed squared window). Away from the edges, j in [n, frames*hop), the
  // value at j sums the same terms in the same order as at j - hop, so one period of `hop`
  // values serves the whole interior; edge samples are summed directly. (Bitwise the values a
  // stream accumulates frame by frame.)
  const int64_t interior_end = frames * hop;
  std::vector<T> period(static_cast<size_t>(hop));
  for (int64_t r = 0; r < hop; ++r) period[size_t(r)] = envelope_at(w2, n, hop, frames, n + r);
  auto env_at = [&](int64_t j) {
    return (j >= n && j < interior_end) ? period[size_t((j - n) % hop)] : envelope_at(w2, n, hop, frames, j);
  };
  {
    const int64_t in_lo = std::max(n, trim), in_hi = std::min(interior_end, valid_end);
    for (int64_t j = trim; j < valid_end; ++j) {
      if (j >= in_lo + hop && j < in_hi) {  // the rest of the interior repeats what was checked
        j = in_hi - 1;
        continue;
      }
      SONICORE_CHECK(env_at(j) > T(kNolaEps), kNolaMessage);
    }
  }

  const T scale = T(p.normalized ? std::sqrt(double(n)) : 1.0);
  // Output blocks are independent: each sums the frames that touch it in frame order, so the
  // threads never share a sample and the order of additions equals the streaming one.
  const int64_t block = std::max<int64_t>(hop * 128, n);
  const int64_t span = std::max<int64_t>(valid_end - trim, 0);
  const int64_t blocks = std::max<int64_t>((span + block - 1) / block, 0);
  parallel_for(batch * blocks, 1, [&](int64_t b, int64_t e) {
    std::vector<T> work(static_cast<size_t>(fft::work_size(*plan))), frame(static_cast<size_t>(n)), re(static_cast<size_t>(M + 1)),
        im(static_cast<size_t>(M + 1)), acc(static_cast<size_t>(block));
    for (int64_t i = b; i < e; ++i) {
      const int64_t bi = i / blocks, blk = i % blocks;
      const int64_t a = trim + blk * block, z = std::min(a + block, valid_end);
      std::fill(acc.begin(), acc.end(), T(0));
      const int64_t t_lo = a - n + 1 <= 0 ? 0 : (a - n + 1 + hop - 1) / hop;
      const int64_t t_hi = std::min(frames - 1, (z - 1) / hop);
      const T* sp = spec + bi * sb;
      for (int64_t t = t_lo; t <= t_hi; ++t) {
        gather_bins(sp + t * st, sf, M + 1, re.data(), im.data());
        im[0] = T(0);
        im[size_t(M)] = T(0);
        fft::inverse_frame(*plan, re.data(), im.data(), scale, we.data(), wo.data(), frame.data(), work.data());
        const int64_t s0 = std::max(a, t * hop), s1 = std::min(z, t * hop + n);
        for (int64_t j = s0; j < s1; ++j) acc[size_t(j - a)] += frame[size_t(j - t * hop)];
      }
      T* o = out + bi * length;
      const int64_t lo = std::min(z, std::max(a, n)), hi = std::max(lo, std::min(z, interior_end));
      for (int64_t j = a; j < lo; ++j) o[j - trim] = acc[size_t(j - a)] / env_at(j);
      for (int64_t j = lo; j < hi;) {  // runs of one period: a loop the compiler vectorises
        const int64_t r = (j - n) % hop, run = std::min(hop - r, hi - j);
        T* dst = o + (j - trim);
        const T* src = acc.data() + (j - a);
        const T* env = period.data() + r;
        for (int64_t i = 0; i < run; ++i) dst[i] = src[i] / env[i];
        j += run;
      }
      for (int64_t j = hi; j < z; ++j) o[j - trim] = acc[size_t(j - a)] / env_at(j);
    }
  });
  // Requested samples past the last frame are zero, like torch.istft's length=.
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t j = std::max<int64_t>(valid_end - trim, 0); j < length; ++j) out[bi * length + j] = T(0);
}

// ------------------------------------------------------------------------ streaming STFT

template <class T>
StftStream<T>::StftStream(const T* window, const StftParams& p) : p_(p) {
  check_params(p_);
  plan_ = fft::real_plan<T>(p_.n_fft);
  split_window(window, p_.n_fft, we_, wo_);
  opt_ = forward_options(p_);
  work_.resize(static_cast<size_t>(fft::work_size(*plan_)));
  tmp_.resize(static_cast<size_t>(p_.n_fft));
}

template <class T>
bool StftStream<T>::complete(int64_t t, int64_t total) const {
  const int64_t pad = p_.center ? p_.n_fft / 2 : 0;
  const int64_t start = t * p_.hop - pad;
  int64_t need = start + p_.n_fft;
  // Reflection of the left padding reads up to sample -start.
  if (start < 0 && p_.pad_mode == PadMode::reflect) need = std::max(need, 1 - start);
  return need <= total;
}

template <class T>
int64_t StftStream<T>::frames_ready(int64_t count) const {
  int64_t t = next_;
  while (complete(t, total_ + count)) ++t;
  return t - next_;
}

template <class T>
void StftStream<T>::emit(int64_t t, T* out) {
  // Mid-stream frames never reach past the samples pushed so far; at flush the right edge of
  // total_ is the end of the signal, where the padding starts.
  const int64_t pad = p_.center ? p_.n_fft / 2 : 0;
  const T* f = padded_frame(buf_.data(), buf_start_, total_, t * p_.hop - pad, p_.n_fft, p_.pad_mode,
                            tmp_.data());
  fft::forward_frame(*plan_, f, we_.data(), wo_.data(), opt_, out, work_.data());
}

template <class T>
int64_t StftStream<T>::push(const T* x, int64_t count, T* out) {
  SONICORE_CHECK(count >= 0, "sample count must be >= 0");
  buf_.insert(buf_.end(), x, x + count);
  total_ += count;
  const int64_t row = row_size();
  int64_t k = 0;
  while (complete(next_, total_)) {
    emit(next_, out + k * row);
    ++next_;
    ++k;
  }
  // Keep what later frames may read: from the next frame's start, and the last n_fft/2 + 1
  // samples that a reflected end may need.
  const int64_t pad = p_.center ? p_.n_fft / 2 : 0;
  const int64_t keep = std::max<int64_t>(0, std::min(next_ * p_.hop - pad, total_ - pad - 1));
  const int64_t drop = keep - buf_start_;
  if (drop > 0 && drop >= int64_t(buf_.size()) / 2) {
    buf_.erase(buf_.begin(), buf_.begin() + drop);
    buf_start_ = keep;
  }
  return k;
}

template <class T>
int64_t StftStream<T>::flush_frames() const {
  return num_frames(total_, p_) - next_;
}

template <class T>
int64_t StftStream<T>::flush(T* out) {
  const int64_t frames = num_frames(total_, p_);
  const int64_t row = row_size();
  int64_t k = 0;
  for (int64_t t = next_; t < frames; ++t, ++k) emit(t, out + k * row);
  reset();
  return k;
}

template <class T>
void StftStream<T>::reset() {
  buf_.clear();
  buf_start_ = 0;
  total_ = 0;
  next_ = 0;
}

// ------------------------------------------------------------------------ streaming iSTFT

template <class T>
IstftStream<T>::IstftStream(const T* window, const IstftParams& p) : p_(p) {
  check_params(p_);
  const int64_t n = p_.n_fft, M = n / 2;
  plan_ = fft::real_plan<T>(n);
  split_window(window, n, we_, wo_);
  w2_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w2_[size_t(i)] = window[i] * window[i];
  // Steady state: every sample far from the ends is covered by all of its frames.
  for (int64_t r = 0; r < p_.hop; ++r) {
    T acc = T(0);
    for (int64_t i = r; i < n; i += p_.hop) acc += w2_[size_t(i)];
    SONICORE_CHECK(acc > T(kNolaEps), kNolaMessage);
  }
  scale_ = T(p_.normalized ? std::sqrt(double(n)) : 1.0);
  work_.resize(static_cast<size_t>(fft::work_size(*plan_)));
  frame_.resize(static_cast<size_t>(n));
  re_.resize(static_cast<size_t>(M + 1));
  im_.resize(static_cast<size_t>(M + 1));
  reset();
}

template <class T>
void IstftStream<T>::reset() {
  acc_.clear();
  env_.clear();
  base_ = 0;
  frames_ = 0;
  emitted_ = p_.center ? p_.n_fft / 2 : 0;
}

// Padded index up to which samples are final once `frames` frames have been pushed: the next
// frame starts at frames * hop, and the centre trim of a stream ending now bounds it too.
template <class T>
int64_t IstftStream<T>::final_end(int64_t frames) const {
  if (frames == 0) return emitted_;
  const int64_t trim = p_.center ? p_.n_fft / 2 : 0;
  return std::min(frames * p_.hop, (frames - 1) * p_.hop + p_.n_fft - trim);
}

template <class T>
int64_t IstftStream<T>::samples_ready(int64_t count) const {
  return std::max<int64_t>(0, final_end(frames_ + count) - emitted_);
}

template <class T>
void IstftStream<T>::emit(int64_t end, T* out) {
  for (int64_t j = emitted_; j < end; ++j) {
    const T e = env_[size_t(j - base_)];
    SONICORE_CHECK(e > T(kNolaEps), kNolaMessage);
    *out++ = acc_[size_t(j - base_)] / e;
  }
  emitted_ = std::max(emitted_, end);
}

template <class T>
int64_t IstftStream<T>::push(const T* spec, int64_t count, int64_t sf, int64_t st, T* out) {
  SONICORE_CHECK(count >= 0, "frame count must be >= 0");
  const int64_t n = p_.n_fft, M = n / 2, hop = p_.hop;
  for (int64_t c = 0; c < count; ++c) {
    gather_bins(spec + c * st, sf, M + 1, re_.data(), im_.data());
    im_[0] = T(0);
    im_[size_t(M)] = T(0);
    fft::inverse_frame(*plan_, re_.data(), im_.data(), scale_, we_.data(), wo_.data(), frame_.data(),
                       work_.data());
    const int64_t start = frames_ * hop - base_;
    if (int64_t(acc_.size()) < start + n) {
      acc_.resize(static_cast<size_t>(start + n), T(0));
      env_.resize(static_cast<size_t>(start + n), T(0));
    }
    for (int64_t i = 0; i < n; ++i) {
      acc_[size_t(start + i)] += frame_[size_t(i)];
      env_[size_t(start + i)] += w2_[size_t(i)];
    }
    ++frames_;
  }
  const int64_t end = final_end(frames_);
  const int64_t before = emitted_;
  emit(end, out);
  // Drop the sums of samples already returned; the next frame starts at frames_ * hop, which
  // may lie before the first returned sample (centre trim), so never go past it.
  const int64_t new_base = std::min(emitted_, frames_ * hop);
  const int64_t drop = new_base - base_;
  if (drop > 0 && drop >= int64_t(acc_.size()) / 2) {
    acc_.erase(acc_.begin(), acc_.begin() + drop);
    env_.erase(env_.begin(), env_.begin() + drop);
    base_ = new_base;
  }
  return emitted_ - before;
}

template <class T>
int64_t IstftStream<T>::flush_samples(int64_t length) const {
  SONICORE_CHECK(frames_ > 0, "no frames were pushed; nothing to flush");
  const int64_t trim = p_.center ? p_.n_fft / 2 : 0;
  const int64_t full = p_.n_fft + p_.hop * (frames_ - 1);
  const int64_t end = length < 0 ? full - trim : trim + length;
  return std::max<int64_t>(0, end - emitted_);
}

template <class T>
int64_t IstftStream<T>::flush(int64_t length, T* out) {
  const int64_t count = flush_samples(length);
  const int64_t full = p_.n_fft + p_.hop * (frames_ - 1);
  const int64_t end = emitted_ + count;
  const int64_t ola_end = std::min(end, full);
  const int64_t before = emitted_;
  if (ola_end > emitted_) emit(ola_end, out);
  for (int64_t j = std::max(ola_end, before); j < end; ++j) out[j - before] = T(0);
  reset();
  return count;
}

template void stft<float>(const float*, int64_t, int64_t, const float*, const StftParams&, float*);
template void stft<double>(const double*, int64_t, int64_t, const double*, const StftParams&, double*);
template void istft<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           const float*, const IstftParams&, float*, int64_t);
template void istft<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            const double*, const IstftParams&, double*, int64_t);
template class StftStream<float>;
template class StftStream<double>;
template class IstftStream<float>;
template class IstftStream<double>;

}  // namespace stft
}  // namespace sonicore
