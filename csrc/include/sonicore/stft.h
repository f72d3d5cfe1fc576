// Batch and streaming STFT / iSTFT on the CPU, with torch.stft / torch.istft semantics.
//
// Layouts (all sizes in elements of T, T = float or double):
//   signal      (batch, samples), contiguous
//   window      (n_fft,), already zero-padded to n_fft
//   stft output (batch, frames, row): row = 2 * bins (re, im interleaved) for Output::complex,
//               else bins; bins = n_fft / 2 + 1 (onesided) or n_fft
//   istft input bin (b, f, t) re at spec[b*sb + f*sf + t*st], im at the next element
//
// One frame is always computed by fft::forward_frame / fft::inverse_frame with the same
// arithmetic, whether it comes from the batch call or a stream: a signal pushed in any
// chunking gives bitwise the batch result.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "sonicore/fft.h"

namespace sonicore {
namespace stft {

enum class PadMode : int { reflect = 0, constant = 1 };

struct StftParams {
  int64_t n_fft = 0;   // even
  int64_t hop = 0;     // >= 1
  bool center = true;  // pad n_fft / 2 on both sides
  PadMode pad_mode = PadMode::reflect;
  bool normalized = false;  // scale by 1 / sqrt(n_fft)
  bool onesided = true;
  fft::Output output = fft::Output::complex;
  double magnitude_eps = 0.0;
  double log_floor = 1e-10;
};

struct IstftParams {
  int64_t n_fft = 0;  // even
  int64_t hop = 0;    // 1 <= hop <= n_fft
  bool center = true;
  bool normalized = false;  // undo the 1 / sqrt(n_fft) of a normalized STFT
};

int64_t num_bins(const StftParams& p);
int64_t row_size(const StftParams& p);
// Frames of a signal of `samples` samples; throws ArgumentError when it is too short.
int64_t num_frames(int64_t samples, const StftParams& p);
void check_params(const StftParams& p);
void check_params(const IstftParams& p);

template <class T>
void stft(const T* x, int64_t batch, int64_t samples, const T* window, const StftParams& p, T* out);

// out: (batch, length). Samples past the last frame are zero (torch.istft's length=).
// Throws ArgumentError when the summed squared window is <= 1e-11 on an output sample (NOLA).
template <class T>
void istft(const T* spec, int64_t batch, int64_t bins, int64_t frames, int64_t sb, int64_t sf,
           int64_t st, const T* window, const IstftParams& p, T* out, int64_t length);

// Output samples of istft without `length`: n_fft + hop * (frames - 1) - 2 * (n_fft / 2) * center.
int64_t istft_length(int64_t frames, const IstftParams& p);

// Streaming STFT of one channel. Copyable: a copy is an independent stream with the same state.
// Algorithmic latency: a frame is emitted as soon as its last sample has been pushed.
template <class T>
class StftStream {
 public:
  StftStream(const T* window, const StftParams& p);
  int64_t num_bins() const { return stft::num_bins(p_); }
  int64_t row_size() const { return stft::row_size(p_); }
  // Frames that push(count samples) would return now.
  int64_t frames_ready(int64_t count) const;
  // Appends count samples; writes frames_ready(count) rows to out; returns that number.
  int64_t push(const T* x, int64_t count, T* out);
  // Frames flush() will return (throws ArgumentError when the signal is too short for the padding).
  int64_t flush_frames() const;
  // Emits the frames that need the end of the signal, then resets.
  int64_t flush(T* out);
  void reset();
  int64_t samples_pushed() const { return total_; }

 private:
  bool complete(int64_t t, int64_t total) const;
  void emit(int64_t t, T* out);

  std::shared_ptr<const fft::RealPlan<T>> plan_;
  StftParams p_;
  fft::ForwardOptions opt_;
  std::vector<T> we_, wo_, work_, tmp_;
  std::vector<T> buf_;     // samples from absolute index buf_start_ on
  int64_t buf_start_ = 0;  // absolute index of buf_[0]
  int64_t total_ = 0;      // samples pushed
  int64_t next_ = 0;       // next frame index
};

// Streaming inverse STFT of one channel (overlap-add of frames as they arrive). Copyable.
template <class T>
class IstftStream {
 public:
  // Throws ArgumentError when the window and hop fail the overlap-add condition.
  IstftStream(const T* window, const IstftParams& p);
  int64_t num_bins() const { return p_.n_fft / 2 + 1; }
  // Samples that push(count frames) would return now.
  int64_t samples_ready(int64_t count) const;
  // frames: bin f of frame k at spec[f*sf + k*st] (re), +1 (im); bins >= n_fft/2 + 1.
  int64_t push(const T* spec, int64_t count, int64_t sf, int64_t st, T* out);
  // Samples flush(length) returns; length < 0: the batch length; else the total output length.
  int64_t flush_samples(int64_t length) const;
  int64_t flush(int64_t length, T* out);
  void reset();

 private:
  int64_t final_end(int64_t frames) const;
  void emit(int64_t end, T* out);

  std::shared_ptr<const fft::RealPlan<T>> plan_;
  IstftParams p_;
  T scale_ = 1;
  std::vector<T> we_, wo_, w2_, work_, frame_, re_, im_;
  std::vector<T> acc_, env_;  // overlap-add sums from padded index base_ on
  int64_t base_ = 0;
  int64_t frames_ = 0;   // frames pushed
  int64_t emitted_ = 0;  // padded index of the next sample to return
};

}  // namespace stft
}  // namespace sonicore
