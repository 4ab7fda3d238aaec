// Classify Fashion-MNIST with a kernel compiled ahead of time.
//
// samples/CMakeLists.txt declares
//   kiln_add_kernel(classify_aot NETWORK aot/fashion_mnist_network.hpp VARIABLE fashion_mnist_net NAME fashion_mnist)
// which, at build time, lowers the network through MLIR to fashion_mnist.o and fashion_mnist.h. This program
// links that object: it calls a plain C++ function and needs no LLVM or MLIR at run time. It loads the weights
// PyTorch trained, checks PyTorch's accuracy and logits, and checks the kernel against Kiln's expression-template
// kernel in both modes (train mode: same dropout mask, same running statistics).
//
//   classify_aot [weights.safetensors] [fashion-mnist folder]
#include "aot/fashion_mnist_network.hpp"

#include <fashion_mnist.h>

#include <cmath>
#include <string>
#include <vector>

namespace {

// The largest |a - b| / (1e-5 |b| + abs) over two tensors of the same size. Against PyTorch (8 images), abs is
// float32's rounding of these sums, 2e-6; between two Kiln kernels that each round their own way, on all 10,000
// images, 5e-6 (the AOT kernel sums the last Linear's 256 products in one chain per output, the expression-template
// kernel in chunks: their worst logit was 1.02 times 4e-6 apart).
double worst_ratio(const float* a, const float* b, kiln::index_t n, double abs = 5e-6) {
  double worst = 0;
  for (kiln::index_t i = 0; i < n; ++i)
    worst = std::max(worst, std::abs(double{a[i]} - b[i]) / (1e-5 * std::abs(b[i]) + abs));
  return worst;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string weights_dir = KILN_SAMPLE_WEIGHTS;
  const std::string weights = argc > 1 ? argv[1] : weights_dir + "/fashion_mnist_mlp.safetensors";
  const std::filesystem::path data_dir = argc > 2 ? argv[2] : kiln::fashion_mnist_dir;

  // The parameters in the order the kernel takes them (fashion_mnist.h lists their state_dict names), and the
  // kernel's packed copy of the weights, made once here.
  kiln::TensorMap state = kiln::load_tensors(weights);
  std::vector<void*> parameters;
  for (const char* name : fashion_mnist_kernel::buffer_names) {
    auto it = state.find(name);
    if (it == state.end()) throw kiln::Error(fmt::format("{}: no tensor \"{}\", which the kernel needs", weights, name));
    parameters.push_back(it->second.bytes());
  }

  const kiln::LabelledImages test = kiln::load_fashion_mnist(/*train=*/false, data_dir);
  const kiln::index_t n = test.images.size(0);
  const fashion_mnist_kernel::Weights packed(parameters.data());
  kiln::Tensor logits({n, fashion_mnist_kernel::output_features});
  fashion_mnist(packed, test.images.data(), logits.data(), n);

  kiln::index_t correct = 0;
  for (kiln::index_t i = 0; i < n; ++i) {
    int best = 0;
    for (int c = 1; c < 10; ++c)
      if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
    correct += best == test.labels.data_i64()[i];
  }
  const double accuracy = static_cast<double>(correct) / static_cast<double>(n);
  const std::string pytorch_accuracy = kiln::read_tensor_file(weights).metadata.at("test_accuracy");
  fmt::print("AOT kernel: test accuracy {:.2f}% on {} images (PyTorch measured {})\n", 100 * accuracy, n, pytorch_accuracy);
  if (std::abs(accuracy - std::stod(pytorch_accuracy)) > 0.0002) throw kiln::Error("the accuracy differs from PyTorch's");
  const kiln::Tensor want = kiln::read_tensor_file(weights_dir + "/expected_logits.safetensors").tensors.at("logits");
  if (const double w = worst_ratio(logits.data(), want.data(), want.numel(), 2e-6); w > 1.0)
    throw kiln::Error(fmt::format("logits differ from PyTorch's (worst ratio {:.2f})", w));

  // Against the expression-template kernel: eval on the whole test set, then one train step on 256 images.
  kiln::Model model{fashion_mnist_net, /*seed=*/7};
  model.load_state_dict(state);
  model.eval();
  const kiln::Tensor et_logits = model(test.images);
  if (const double w = worst_ratio(logits.data(), et_logits.data(), logits.numel()); w > 1.0)
    throw kiln::Error(fmt::format("eval: the AOT kernel differs from the expression-template kernel (worst ratio {:.2f})", w));

  const kiln::Tensor batch = test.images.slice_rows(0, 256);
  model.train();
  const kiln::Tensor et_train = model(batch);  // draws the mask of (seed 7, step 0) and updates the running stats
  kiln::Tensor aot_train({256, fashion_mnist_kernel::output_features});
  fashion_mnist_kernel::Weights::Buffers buffers = packed.buffers();
  buffers[fashion_mnist_kernel::buffer_count + 1] = const_cast<float*>(batch.data());
  buffers[fashion_mnist_kernel::buffer_count + 2] = aot_train.data();
  fashion_mnist_train(buffers.data(), 256, /*seed=*/7, /*step=*/0);
  double worst = worst_ratio(aot_train.data(), et_train.data(), aot_train.numel());
  const kiln::TensorMap after = model.state_dict();
  for (const char* name : {"2.running_mean", "2.running_var"})
    worst = std::max(worst, worst_ratio(state.at(name).data(), after.at(name).data(), 256));
  if (worst > 1.0 || state.at("2.num_batches_tracked").data_i64()[0] != after.at("2.num_batches_tracked").data_i64()[0])
    throw kiln::Error(fmt::format("train: the AOT kernel differs from the expression-template kernel (worst ratio {:.2f})", worst));
  fmt::print("the AOT kernel matches PyTorch and the expression-template kernel in eval and train mode\n");
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
