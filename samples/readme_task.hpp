// The small synthetic task the README's training samples (readme_training.cpp, readme_dist.cpp) run their blocks
// on: 2560 images of noise in which class k has a bright band on rows 2k + 4 and 2k + 5.
#pragma once

#include <kiln/kiln.hpp>

#include <cmath>

namespace samples {

struct BandTask {
  kiln::Tensor images, labels;
};

inline BandTask band_task() {
  const kiln::index_t samples = 2560;
  BandTask task{kiln::Tensor({samples, 1, 28, 28}), kiln::Tensor({samples}, kiln::DType::int64)};
  for (kiln::index_t s = 0; s < samples; ++s) {
    const kiln::index_t k = s % 10;
    task.labels.data_i64()[s] = k;
    for (kiln::index_t p = 0; p < 28 * 28; ++p) {
      const float noise = 0.5f * std::sin(12.9898f * static_cast<float>(s * 784 + p));
      task.images[s * 784 + p] = noise + (p / 28 / 2 == k + 2 ? 1.0f : 0.0f);
    }
  }
  return task;
}

}  // namespace samples
