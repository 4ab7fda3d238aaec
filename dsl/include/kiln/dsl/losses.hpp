// The losses of torch.nn that Kiln trains with, declared like its layers: options with PyTorch's defaults.
// Their math lives in codegen/et/include/kiln/et/loss.hpp.
#pragma once

namespace kiln::nn {

enum class Reduction { mean, sum };

// -log_softmax(x)[target] on logits [N, C] with int64 class targets [N]; with label smoothing e the target
// distribution is (1 - e) one_hot + e / C.
struct CrossEntropyLoss {
  float label_smoothing = 0.0f;
  Reduction reduction = Reduction::mean;
};

// (x - target)^2, averaged over every element (mean) or summed.
struct MSELoss {
  Reduction reduction = Reduction::mean;
};

}  // namespace kiln::nn
