// Classify Fashion-MNIST with weights PyTorch trained.
//
// The network is the seed tutorial's, declared as a C++ type. The weights were trained and saved by PyTorch
// (samples/weights/train_fashion_mnist.py, safetensors.torch.save_file); Kiln loads them as they are, runs the
// network as one fused kernel, and checks that its logits are PyTorch's.
//
//   classify_fashion_mnist [weights.safetensors] [fashion-mnist folder]
#include <kiln/kiln.hpp>

#include <cmath>
#include <string>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},      nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{},             nn::Dropout{0.2f},  nn::Linear<256, 10>{}};

int main(int argc, char** argv) try {
  const std::string weights_dir = KILN_SAMPLE_WEIGHTS;
  const std::string weights = argc > 1 ? argv[1] : weights_dir + "/fashion_mnist_mlp.safetensors";
  const std::filesystem::path data_dir = argc > 2 ? argv[2] : kiln::fashion_mnist_dir;

  fmt::print("{}\n", net);
  kiln::Model model{net};
  model.load_safetensors(weights);
  model.eval();
  fmt::print("loaded {} (trained by PyTorch)\n\n", weights);

  const kiln::LabelledImages test = kiln::load_fashion_mnist(/*train=*/false, data_dir);
  const kiln::Tensor logits = model(test.images);
  const std::int64_t* labels = test.labels.data_i64();
  const kiln::index_t n = test.images.size(0);

  auto predicted = [&](kiln::index_t i) {
    int best = 0;
    for (int c = 1; c < 10; ++c)
      if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
    return best;
  };
  fmt::print("{:<6} {:<12} {:<12}\n", "image", "predicted", "label");
  for (kiln::index_t i = 0; i < 8; ++i)
    fmt::print("{:<6} {:<12} {:<12}{}\n", i, kiln::fashion_mnist_classes[predicted(i)],
               kiln::fashion_mnist_classes[labels[i]], predicted(i) == labels[i] ? "" : "  (wrong)");
  kiln::index_t correct = 0;
  for (kiln::index_t i = 0; i < n; ++i) correct += predicted(i) == labels[i];
  const kiln::TensorFile expected = kiln::read_tensor_file(weights_dir + "/expected_logits.safetensors");
  const double accuracy = static_cast<double>(correct) / static_cast<double>(n);
  const std::string pytorch_accuracy = kiln::read_tensor_file(weights).metadata.at("test_accuracy");
  fmt::print("\ntest accuracy: {:.2f}% on {} images (PyTorch measured {})\n", 100 * accuracy, n, pytorch_accuracy);
  if (std::abs(accuracy - std::stod(pytorch_accuracy)) > 0.0002) {
    fmt::print("the accuracy differs from PyTorch's\n");
    return 1;
  }

  // Kiln's logits for the first 8 images against those PyTorch computed.
  const kiln::Tensor& want = expected.tensors.at("logits");
  double worst = 0;
  for (kiln::index_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::abs(logits[i] - want[i]) / (1e-5 * std::abs(want[i]) + 1e-6));
  if (worst > 1.0) {
    fmt::print("logits differ from PyTorch's beyond 1e-5 relative (worst ratio {:.2f})\n", worst);
    return 1;
  }
  fmt::print("logits of the first {} images match PyTorch within 1e-5 relative\n", want.size(0));
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
