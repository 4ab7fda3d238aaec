// Resuming training: a run stopped after some steps, its model, optimizer and scheduler saved to safetensors and
// loaded into new ones, continues bit for bit as the run that never stopped. And the state's layout (torch.optim's
// names) and the refusals of a load that does not fit.
#include "../support.hpp"

#include <unistd.h>

#include <filesystem>
#include <memory>

using kiln::Tensor;
namespace nn = kiln::nn;
namespace optim = kiln::optim;

namespace {

constexpr nn::Sequential resume_net{kiln::input<6>, nn::Linear<6, 16>{}, nn::BatchNorm1d<16>{}, nn::ReLU{},
                                    nn::Dropout{0.2f}, nn::Linear<16, 3>{}};
using ResumeModel = kiln::Model<std::remove_cv_t<decltype(resume_net)>>;

Tensor batch_input(int step) {
  Tensor x({8, 6});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.3f * static_cast<float>(i) + static_cast<float>(step));
  return x;
}
Tensor batch_targets(int step) {
  Tensor y({8}, kiln::DType::int64);
  for (kiln::index_t i = 0; i < 8; ++i) y.data_i64()[i] = (i + step) % 3;
  return y;
}

// An optimizer and, when `scheduled`, a StepLR over it; steps [first, last) of the run.
struct Run {
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::StepLR> schedule;
  void steps(ResumeModel& model, int first, int last) {
    for (int s = first; s < last; ++s) {
      model.zero_grad();
      model.forward_backward(batch_input(s), batch_targets(s), nn::CrossEntropyLoss{});
      if (auto* sgd = dynamic_cast<optim::SGD*>(opt.get())) sgd->step();
      else dynamic_cast<optim::Adam&>(*opt).step();
      if (schedule) schedule->step();
    }
  }
};

using MakeOptimizer = std::unique_ptr<optim::Optimizer> (*)(ResumeModel&);

Run make_run(ResumeModel& model, MakeOptimizer make) {
  Run r{make(model), nullptr};
  r.schedule = std::make_unique<optim::StepLR>(*r.opt, 2, 0.5);
  return r;
}

bool same_state(const kiln::TensorMap& a, const kiln::TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a)
    if (!b.contains(k) || !kiln::testing::same_bits(t, b.at(k))) return false;
  return true;
}

void check_resume(const char* name, MakeOptimizer make) {
  INFO(name);
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("kiln_resume_{}_{}", name, ::getpid());
  std::filesystem::create_directories(dir);
  // The run that never stops: 7 steps.
  ResumeModel whole{resume_net, 11};
  Run whole_run = make_run(whole, make);
  whole_run.steps(whole, 0, 7);
  // Stopped after 4, saved; new objects, loaded; 3 more.
  ResumeModel first{resume_net, 11};
  Run first_run = make_run(first, make);
  first_run.steps(first, 0, 4);
  first.save_safetensors(dir / "model.safetensors");
  first_run.opt->save_safetensors(dir / "optimizer.safetensors");
  kiln::save_tensors(dir / "schedule.safetensors", {}, first_run.schedule->state_dict());
  const std::uint64_t step = first.step();

  ResumeModel resumed{resume_net, 11};
  resumed.load_safetensors(dir / "model.safetensors");
  resumed.set_step(step);  // the dropout masks' counter
  Run resumed_run = make_run(resumed, make);
  resumed_run.opt->load_safetensors(dir / "optimizer.safetensors");
  resumed_run.schedule->load_state_dict(kiln::read_tensor_file(dir / "schedule.safetensors").metadata);
  resumed_run.steps(resumed, 4, 7);

  CHECK(same_state(whole.state_dict(), resumed.state_dict()));
  CHECK(same_state(whole_run.opt->state_dict().tensors, resumed_run.opt->state_dict().tensors));
  CHECK(whole_run.opt->lr == resumed_run.opt->lr);
  // And without the optimizer's state, the run would not be the same (the test can fail).
  ResumeModel fresh{resume_net, 11};
  fresh.load_safetensors(dir / "model.safetensors");
  fresh.set_step(step);
  Run fresh_run = make_run(fresh, make);
  fresh_run.steps(fresh, 4, 7);
  CHECK(!same_state(whole.state_dict(), fresh.state_dict()));
  std::filesystem::remove_all(dir);
}

}  // namespace

TEST_CASE("optimizer state: SGD with momentum, Adam and AdamW resume bit for bit, with StepLR", "[training][resume]") {
  check_resume("sgd", [](ResumeModel& m) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::SGD>(m, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
  });
  check_resume("adam", [](ResumeModel& m) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::Adam>(m, optim::AdamOptions{.lr = 0.01, .weight_decay = 1e-3});
  });
  check_resume("adamw", [](ResumeModel& m) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::AdamW>(m, optim::AdamWOptions{.lr = 0.01});
  });
}

TEST_CASE("optimizer state: torch.optim's names, and loads that do not fit are refused", "[training][resume]") {
  ResumeModel model{resume_net, 3};
  optim::Adam adam{model, {.lr = 0.02}};
  CHECK(adam.state_dict().tensors.empty());  // torch's state is empty before the first step
  model.forward_backward(batch_input(0), batch_targets(0), nn::CrossEntropyLoss{});
  adam.step();
  const kiln::TensorFile state = adam.state_dict();
  CHECK(state.metadata.at("optimizer") == "Adam");
  CHECK(state.metadata.at("param_groups.0.lr") == "0.02");
  CHECK(state.metadata.at("param_groups.0.betas.1") == "0.999");
  CHECK(state.tensors.at("state.0.exp_avg").shape() == kiln::Shape{16, 6});  // 0.weight, as torch numbers them
  CHECK(state.tensors.at("state.5.exp_avg_sq").shape() == kiln::Shape{3});  // 4.bias
  CHECK(state.tensors.at("state.3.step").shape() == kiln::Shape{});
  CHECK(state.tensors.at("state.3.step")[0] == 1.0f);
  CHECK(state.tensors.size() == 6 * 3);

  optim::SGD sgd{model, {.lr = 0.1, .momentum = 0.9}};
  CHECK_THROWS_WITH(sgd.load_state_dict(state, "opt.safetensors"),
                    "kiln: opt.safetensors: cannot load into SGD: it holds the state of Adam");
  kiln::TensorFile wrong = state;
  wrong.tensors.at("state.2.exp_avg") = Tensor({15});
  CHECK_THROWS_WITH(adam.load_state_dict(wrong, "opt.safetensors"),
                    "kiln: opt.safetensors: cannot load into Adam: key \"state.2.exp_avg\": expected F32 [16], got F32 [15]");
  wrong = state;
  wrong.tensors.erase("state.4.exp_avg_sq");
  CHECK_THROWS_WITH(adam.load_state_dict(wrong, "opt.safetensors"),
                    "kiln: opt.safetensors: cannot load into Adam: missing key \"state.4.exp_avg_sq\"");
  wrong = state;
  wrong.tensors.emplace("state.6.exp_avg", Tensor({3}));
  CHECK_THROWS_WITH(adam.load_state_dict(wrong, "opt.safetensors"),
                    "kiln: opt.safetensors: cannot load into Adam: unexpected key \"state.6.exp_avg\"");
  wrong = state;
  wrong.metadata.at("param_groups.0.lr") = "fast";
  CHECK_THROWS_WITH(adam.load_state_dict(wrong, "opt.safetensors"),
                    "kiln: opt.safetensors: cannot load into Adam: \"param_groups.0.lr\" is \"fast\", not a number");
  CHECK(adam.lr == 0.02);  // every failed load changed nothing
  optim::StepLR schedule{adam, 3};
  CHECK_THROWS_WITH(schedule.load_state_dict({{"last_epoch", "-2"}, {"base_lrs.0", "0.1"}}),
                    "kiln: StepLR state: last_epoch -2 is not a count");
}
