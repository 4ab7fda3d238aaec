// The main job: train a Fashion-MNIST classifier declared as a C++ type, natively.
//
// Flatten -> Linear(784, 256) -> BatchNorm1d -> ReLU -> Dropout(0.2) -> Linear(256, 10), AdamW with a cosine
// schedule, CrossEntropyLoss with label smoothing. After each epoch: test accuracy; the best weights are saved
// as safetensors (PyTorch loads them as they are), and the loss and accuracy curves as CSV and SVG.
//
//   train_fashion_mnist [--epochs N] [--batch N] [--lr X] [--threads N] [--out DIR] [--data DIR]
//   mpirun -np 2 train_fashion_mnist --distributed [--sync-batchnorm] [...]
//
// --distributed (Kiln built with MPI: kiln::dist): data-parallel over the ranks of the MPI job. --batch is then the
// global batch, each rank taking its share of every batch (so the run computes what one process computes, but for
// BatchNorm1d's statistics, which are each rank's own unless --sync-batchnorm); --threads defaults to the cores
// per rank on this machine. Rank 0 prints and writes the files.
#include "svg_chart.hpp"

#include <kiln/kiln.hpp>
#ifdef KILN_SAMPLE_HAS_DIST
#include <kiln/dist.hpp>
#endif

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <span>
#include <unistd.h>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

struct Options {
  int epochs = 10;
  index_t batch = 64;
  double lr = 2e-3;
  int threads = 0;  // 0: all hardware threads
  std::string out = "fashion_mnist_run";
  std::string data = kiln::fashion_mnist_dir;
  bool distributed = false, sync_batchnorm = false;
};

// Ranks of this job on this machine (Open MPI's mpirun says), which share its cores.
int local_ranks() {
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  return local ? std::max(1, std::atoi(local)) : 1;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw kiln::Error(fmt::format("{} needs a value", a));
      return argv[++i];
    };
    if (a == "--epochs") o.epochs = std::stoi(value());
    else if (a == "--batch") o.batch = std::stol(value());
    else if (a == "--lr") o.lr = std::stod(value());
    else if (a == "--threads") o.threads = std::stoi(value());
    else if (a == "--out") o.out = value();
    else if (a == "--data") o.data = value();
    else if (a == "--distributed") o.distributed = true;
    else if (a == "--sync-batchnorm") o.sync_batchnorm = true;
    else throw kiln::Error(fmt::format("unknown option {} (see the comment at the top of train_fashion_mnist.cpp)", a));
  }
  return o;
}

struct Evaluation {
  double loss, accuracy;
};

// The ranks of a --distributed run, and sums over them; one rank otherwise.
struct Ranks {
#ifdef KILN_SAMPLE_HAS_DIST
  std::optional<kiln::dist::World> world;
#endif
  int rank = 0, size = 1;

  Ranks(const Options& o, int& argc, char**& argv) {
    if (!o.distributed) return;
#ifdef KILN_SAMPLE_HAS_DIST
    world.emplace(argc, argv);
    rank = world->rank();
    size = world->size();
#else
    (void)argc, (void)argv;
    throw kiln::Error("--distributed: this Kiln was built without kiln::dist (configure with -DKILN_MPI=ON, with "
                      "libopenmpi-dev installed)");
#endif
  }
  void sum(std::span<double> values) const {
#ifdef KILN_SAMPLE_HAS_DIST
    if (world) world->sum(values);
#endif
    (void)values;
  }
};

// Eval-mode loss (the training loss, label smoothing included, so the curves compare) and accuracy on a whole
// split, in chunks; with several ranks each takes every size-th chunk, and the sums are added over the ranks.
template <class Model>
Evaluation evaluate(Model& model, const kiln::LabelledImages& data, nn::CrossEntropyLoss loss_fn, const Ranks& ranks) {
  loss_fn.reduction = nn::Reduction::sum;
  model.eval();
  const index_t n = data.images.size(0), chunk = 1000;
  double loss = 0;
  index_t correct = 0;
  Tensor logits;
  for (index_t first = chunk * ranks.rank; first < n; first += chunk * ranks.size) {
    const index_t m = std::min(chunk, n - first);
    const Tensor x = data.images.slice_rows(first, first + m), y = data.labels.slice_rows(first, first + m);
    // forward_backward in eval mode computes the loss and logits; its gradients are discarded below.
    loss += model.forward_backward(x, y, loss_fn, &logits);
    for (index_t i = 0; i < m; ++i) {
      const float* row = logits.data() + i * 10;
      correct += std::max_element(row, row + 10) - row == y.data_i64()[i];
    }
  }
  model.zero_grad();
  std::array<double, 2> sums{loss, static_cast<double>(correct)};
  ranks.sum(sums);
  return {sums[0] / static_cast<double>(n), sums[1] / static_cast<double>(n)};
}

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const Ranks ranks{o, argc, argv};
  const bool root = ranks.rank == 0;
  if (o.batch % ranks.size != 0)
    throw kiln::Error(fmt::format("--batch {} does not split evenly over {} ranks", o.batch, ranks.size));
  if (o.threads > 0) kiln::set_num_threads(o.threads);
  else if (ranks.size > 1) kiln::set_num_threads(std::max(1, kiln::get_num_threads() / local_ranks()));
  if (root) std::filesystem::create_directories(o.out);
  const bool tty = root && isatty(STDOUT_FILENO);

  const kiln::LabelledImages train = kiln::load_fashion_mnist(true, o.data), test = kiln::load_fashion_mnist(false, o.data);
  if (root)
    fmt::print("{}Fashion-MNIST: {} training and {} test images; {} epochs of batch {}, {} threads{}\n\n", net,
               train.images.size(0), test.images.size(0), o.epochs, o.batch, kiln::get_num_threads(),
               ranks.size == 1 ? "" : fmt::format(" per rank, {} ranks, BatchNorm1d statistics {}", ranks.size,
                                                  o.sync_batchnorm ? "synchronised" : "per rank"));

  kiln::Model model{net, /*seed=*/2024};
  kiln::optim::AdamW opt{model, {.lr = o.lr, .weight_decay = 1e-4}};
  // One rank: the whole batch, as a BatchLoader gives it.
  kiln::ShardedBatchLoader loader{train.images, train.labels, o.batch / ranks.size, /*seed=*/7, ranks.rank, ranks.size};
  const index_t steps_per_epoch = loader.batches();
  kiln::optim::CosineAnnealingLR schedule{opt, static_cast<int>(steps_per_epoch * o.epochs)};
  const nn::CrossEntropyLoss loss_fn{.label_smoothing = 0.05f};
#ifdef KILN_SAMPLE_HAS_DIST
  using DataParallel = kiln::dist::DataParallel<decltype(model)>;
  std::optional<DataParallel> ddp;
  if (ranks.world) ddp.emplace(*ranks.world, model, DataParallel::Options{.sync_batchnorm = o.sync_batchnorm});
#endif
  // This rank's part of the global batch: the global batch's loss and gradients.
  auto forward_backward = [&](const Tensor& x, const Tensor& y, const kiln::BatchShard& shard, Tensor& logits) {
#ifdef KILN_SAMPLE_HAS_DIST
    if (ddp) return ddp->forward_backward(x, y, loss_fn, shard, &logits);
#endif
    (void)shard;
    return model.forward_backward(x, y, loss_fn, &logits);
  };
  auto save = [&](const std::filesystem::path& path, const kiln::Metadata& metadata) {
#ifdef KILN_SAMPLE_HAS_DIST
    if (ranks.world) return kiln::dist::save_model(*ranks.world, model, path, metadata);
#endif
    model.save_safetensors(path, metadata);
  };

  std::vector<double> train_loss, train_acc, test_loss, test_acc;
  std::ofstream csv;
  if (root) {
    csv.open(o.out + "/history.csv");
    std::ofstream(o.out + "/network.py") << kiln::to_pytorch(net);  // the same network in PyTorch, for best.safetensors
    csv << "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,samples_per_second\n";
  }
  double best = -1;
  Tensor x, y, logits;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    model.train();
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0;
    index_t seen = 0, correct = 0;
    for (index_t step = 0; step < steps_per_epoch; ++step) {
      const kiln::BatchShard shard = loader.batch(epoch, step, x, y);
      model.zero_grad();
      const double loss = forward_backward(x, y, shard, logits);
      opt.step();
      schedule.step();
      const index_t n = x.size(0);
      loss_sum += loss * static_cast<double>(shard.global_size);
      seen += shard.global_size;
      for (index_t i = 0; i < n; ++i) {
        const float* row = logits.data() + i * 10;
        correct += std::max_element(row, row + 10) - row == y.data_i64()[i];
      }
      if (tty && (step % 20 == 0 || step + 1 == steps_per_epoch)) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const int filled = static_cast<int>(30 * (step + 1) / steps_per_epoch);
        fmt::print("\repoch {:>2}/{} [{:=<{}}{:<{}}] step {:>4}/{} loss {:.4f} {:>7.0f} samples/s", epoch, o.epochs, "",
                   filled, "", 30 - filled, step + 1, steps_per_epoch, loss_sum / static_cast<double>(seen),
                   static_cast<double>(seen) / std::max(seconds, 1e-9));
        std::fflush(stdout);
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::array<double, 1> correct_sum{static_cast<double>(correct)};  // each rank counted its own rows
    ranks.sum(correct_sum);
    const Evaluation t = evaluate(model, test, loss_fn, ranks);
    train_loss.push_back(loss_sum / static_cast<double>(seen));
    train_acc.push_back(correct_sum[0] / static_cast<double>(seen));
    test_loss.push_back(t.loss);
    test_acc.push_back(t.accuracy);
    const bool improved = t.accuracy > best;
    if (improved) {
      best = t.accuracy;
      save(o.out + "/best.safetensors", {{"test_accuracy", fmt::format("{:.4f}", t.accuracy)},
                                         {"epoch", std::to_string(epoch)},
                                         {"trained_by", "samples/train_fashion_mnist.cpp"}});
    }
    if (!root) continue;
    fmt::print("{}epoch {:>2}/{}: train loss {:.4f}, train accuracy {:.2f}%, test loss {:.4f}, test accuracy "
               "{:.2f}%{} ({:.1f} s, {:.0f} samples/s)\n",
               tty ? "\r\033[K" : "", epoch, o.epochs, train_loss.back(), 100 * train_acc.back(), t.loss,
               100 * t.accuracy, improved ? ", best so far: saved" : "", seconds, static_cast<double>(seen) / seconds);
    csv << fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6g},{:.3f},{:.0f}\n", epoch, train_loss.back(), train_acc.back(),
                       t.loss, t.accuracy, opt.lr, seconds, static_cast<double>(seen) / seconds);
    csv.flush();
    samples::write_svg_chart(o.out + "/curves.svg",
                             {{"Loss (cross-entropy)", "loss", {{"train", "#1f77b4", train_loss}, {"test", "#d62728", test_loss}}},
                              {"Accuracy", "accuracy", {{"train", "#1f77b4", train_acc}, {"test", "#d62728", test_acc}}, true}});
  }
  if (root)
    fmt::print("\nbest test accuracy: {:.2f}%\nwrote {}/best.safetensors, {}/network.py (the network in PyTorch), "
               "{}/history.csv, {}/curves.svg\n", 100 * best, o.out, o.out, o.out, o.out);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
