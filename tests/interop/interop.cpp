// kiln_interop write <file> <keys.txt>: saves a trained-looking model's state_dict, and lists "name dtype shape".
// kiln_interop compare <a> <b>: the two files hold the same tensors, bit for bit.
// kiln_interop refuses <folder>: every file in the folder (hostile.py wrote them) is refused with a kiln::Error.
// kiln_interop optimizers <folder>: SGD (momentum) and Adam states after two steps, for optimizer_layout.py.
#include <kiln/kiln.hpp>

#include <cstring>
#include <fstream>
#include <set>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 32>{}, nn::BatchNorm1d<32>{},
                             nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<32, 10>{}};

int main(int argc, char** argv) try {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "write" && argc == 4) {
    kiln::Model model{net, 3};
    kiln::Tensor x({8, 1, 28, 28});
    for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 251) / 251.0f;
    model(x);  // moves the running stats and num_batches_tracked
    model.save_safetensors(argv[2], {{"written_by", "kiln"}});
    std::ofstream keys(argv[3]);
    for (const auto& [name, t] : model.state_dict())
      keys << name << ' ' << kiln::dtype_name(t.dtype()) << ' ' << fmt::format("{}", fmt::join(t.shape(), ",")) << '\n';
    return 0;
  }
  if (mode == "optimizers" && argc == 3) {
    const std::string dir = argv[2];
    kiln::Model model{net, 3};
    kiln::Tensor x({8, 1, 28, 28}), y({8}, kiln::DType::int64);
    for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 251) / 251.0f;
    for (kiln::index_t i = 0; i < 8; ++i) y.data_i64()[i] = i;
    kiln::optim::SGD sgd{model, {.lr = 0.1, .momentum = 0.9}};
    kiln::optim::Adam adam{model, {.lr = 0.01}};
    for (int step = 0; step < 2; ++step) {
      model.zero_grad();
      model.forward_backward(x, y, nn::CrossEntropyLoss{});
      sgd.step();
      adam.step();
    }
    sgd.save_safetensors(dir + "/sgd.safetensors");
    adam.save_safetensors(dir + "/adam.safetensors");
    return 0;
  }
  if (mode == "compare" && argc == 4) {
    const kiln::TensorMap a = kiln::load_tensors(argv[2]), b = kiln::load_tensors(argv[3]);
    if (a.size() != b.size()) throw kiln::Error(fmt::format("{} tensors vs {}", a.size(), b.size()));
    for (const auto& [name, t] : a) {
      const kiln::Tensor& u = b.at(name);
      if (t.shape() != u.shape() || t.dtype() != u.dtype() || std::memcmp(t.bytes(), u.bytes(), t.nbytes()) != 0)
        throw kiln::Error("tensor " + name + " differs after the round trip through safetensors");
    }
    fmt::print("kiln read {} tensors written by safetensors, bit-exact\n", a.size());
    return 0;
  }
  if (mode == "refuses" && argc == 3) {
    std::set<std::filesystem::path> files(std::filesystem::directory_iterator(argv[2]), {});
    for (const auto& file : files) {
      try {
        kiln::load_tensors(file);
      } catch (const kiln::Error& e) {
        fmt::print("kiln refuses {}: {}\n", file.filename().string(), std::string(e.what()).substr(0, 300));
        continue;
      }
      throw kiln::Error(fmt::format("{} loads, but the reference safetensors refuses it", file.string()));
    }
    fmt::print("kiln refuses all {} hostile files\n", files.size());
    return 0;
  }
  fmt::print(stderr, "usage: kiln_interop write <file> <keys.txt> | compare <a> <b> | refuses <folder>\n");
  return 2;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
