// Optimizers, gradient clipping and learning-rate schedules, matching torch.optim step for step (torch 1.13):
//
//   kiln::optim::SGD opt{model, {.lr = 0.1, .momentum = 0.9}};
//   for (...) { model.zero_grad(); model.forward_backward(x, y, loss); opt.step(); }
//
// Updates run in float32 on the parameters, as PyTorch's do; after each step the model repacks its weights.
//
// Resuming: opt.save_safetensors(path) / opt.load_safetensors(path) (or state_dict() / load_state_dict()) keep
// what torch.optim's state_dict keeps, under its names flattened: tensors "state.<i>.momentum_buffer" (SGD),
// "state.<i>.step", "state.<i>.exp_avg", "state.<i>.exp_avg_sq" (Adam, AdamW), i the parameter's index in
// params(); the param group's hyperparameters as metadata "param_groups.0.<name>", every digit kept. A scheduler's
// state_dict() is metadata too. Loaded into a new model, optimizer and scheduler, a run continues bit for bit.
#pragma once

#include <kiln/et/simd.hpp>
#include <kiln/runtime/error.hpp>
#include <kiln/runtime/parameter.hpp>
#include <kiln/runtime/tensor.hpp>
#include <kiln/runtime/tensor_file.hpp>
#include <kiln/runtime/threads.hpp>

#include <cmath>
#include <functional>
#include <memory>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

namespace kiln::optim {

namespace detail {
// The number a metadata entry holds, written whole ("0.001", not "0.001x"); nullopt when absent or not a number.
inline std::optional<double> metadata_number(const Metadata& metadata, const std::string& key) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(it->second, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used == 0 || used != it->second.size()) return std::nullopt;
  return value;
}

// A scheduler's last_epoch and base lr from its state_dict(), checked before either is set.
inline void load_schedule(const Metadata& state, const char* scheduler, int& epoch, double& base) {
  auto number = [&](const char* key) {
    const std::optional<double> value = metadata_number(state, key);
    if (!value) throw Error(fmt::format("{} state: \"{}\" missing or not a number", scheduler, key));
    return *value;
  };
  const double last_epoch = number("last_epoch"), base_lr = number("base_lrs.0");
  if (last_epoch < 0 || last_epoch != std::floor(last_epoch) || last_epoch > 1e9)
    throw Error(fmt::format("{} state: last_epoch {} is not a count", scheduler, last_epoch));
  epoch = static_cast<int>(last_epoch);
  base = base_lr;
}
}  // namespace detail

// What every optimizer holds: the model's parameters (value and gradient views) and how to hold the model while
// it writes them (no call of the model runs meanwhile; the model repacks them when the step ends).
class Optimizer {
 public:
  double lr;

  void zero_grad() {
    for (Parameter& p : params_) p.grad.fill(0.0f);
  }
  // The parameters' values and gradients (views into the model), in the network's order.
  std::vector<Parameter>& params() { return params_; }

  // torch.optim's state_dict, flattened (see the top of this file).
  TensorFile state_dict() const {
    TensorFile out;
    out.metadata["optimizer"] = kind();
    for (const auto& [name, value] : hyperparameters()) out.metadata["param_groups.0." + name] = fmt::format("{}", value);
    write_state(out.tensors);
    return out;
  }
  // Restores what state_dict() gave, hyperparameters included (as torch does), after checking all of it: a
  // failed load changes nothing. `source` names where it came from, in errors.
  void load_state_dict(const TensorFile& state, const std::string& source = "optimizer state") {
    auto fail = [&](const std::string& what) { throw Error(fmt::format("{}: cannot load into {}: {}", source, kind(), what)); };
    const auto saved_kind = state.metadata.find("optimizer");
    if (saved_kind == state.metadata.end() || saved_kind->second != kind())
      fail(fmt::format("it holds the state of {}", saved_kind == state.metadata.end() ? "no optimizer" : saved_kind->second));
    std::vector<std::pair<std::string, double>> values = hyperparameters();
    for (auto& [name, value] : values) {
      const std::string key = "param_groups.0." + name;
      const auto it = state.metadata.find(key);
      if (it == state.metadata.end()) fail(fmt::format("no \"{}\"", key));
      const std::optional<double> number = detail::metadata_number(state.metadata, key);
      if (!number) fail(fmt::format("\"{}\" is \"{}\", not a number", key, it->second));
      value = *number;
    }
    for (const auto& [key, t] : state.tensors) {
      const auto [index, name] = state_key(key);
      if (index < 0 || index >= static_cast<long>(params_.size()) || !state_names_allow(name))
        fail(fmt::format("unexpected key \"{}\"", key));
      const Shape want = name == "step" ? Shape{} : params_[static_cast<std::size_t>(index)].value.shape();
      if (t.dtype() != DType::float32 || t.shape() != want)
        fail(fmt::format("key \"{}\": expected F32 {}, got {} {}", key, shape_text(want), dtype_name(t.dtype()), shape_text(t.shape())));
    }
    check_state(state.tensors, fail);
    set_hyperparameters(values);
    read_state(state.tensors);
  }
  void save_safetensors(const std::filesystem::path& path) const {
    const TensorFile state = state_dict();
    save_tensors(path, state.tensors, state.metadata);
  }
  void load_safetensors(const std::filesystem::path& path) { load_state_dict(read_tensor_file(path), path.string()); }

  virtual ~Optimizer() = default;

 protected:
  template <class Model>
  Optimizer(Model& model, double lr_)
      : lr(lr_), begin_update_([&model] { return std::make_shared<typename Model::ParameterUpdate>(model); }) {
    if (!(lr_ >= 0)) throw Error(fmt::format("optimizer: lr must be >= 0, got {}", lr_));
    params_ = model.parameters();
  }
  // Held for the length of a step.
  std::shared_ptr<void> begin_update() { return begin_update_(); }
  std::vector<Parameter> params_;

  // Calls update(k, begin, end) for elements [begin, end) of every parameter k, in chunks spread over Kiln's
  // threads (parallel_for_chunks): an optimizer's update is element by element. Only a parameter's last chunk
  // may end in a partial vector.
  template <class Update>
  void for_element_chunks(Update&& update) const {
    std::vector<index_t> sizes;
    for (const Parameter& p : params_) sizes.push_back(p.value.numel());
    parallel_for_chunks(sizes, update);
  }

  // What each optimizer says about its state: its torch name, its hyperparameters by torch's names (lr first),
  // the per-parameter tensor names it keeps, and how to write, check and read them.
  virtual std::string kind() const = 0;
  virtual std::vector<std::pair<std::string, double>> hyperparameters() const = 0;
  virtual void set_hyperparameters(const std::vector<std::pair<std::string, double>>& values) = 0;
  virtual bool state_names_allow(const std::string& name) const = 0;
  virtual void write_state(TensorMap& out) const = 0;
  virtual void check_state(const TensorMap& in, const std::function<void(const std::string&)>& fail) const = 0;
  virtual void read_state(const TensorMap& in) = 0;
  static std::string state_name(std::size_t index, const char* name) { return fmt::format("state.{}.{}", index, name); }
  // "state.3.exp_avg" -> {3, "exp_avg"}; {-1, ""} for another key.
  static std::pair<long, std::string> state_key(const std::string& key) {
    if (!key.starts_with("state.")) return {-1, ""};
    const std::size_t dot = key.find('.', 6);
    if (dot == std::string::npos || dot == 6 || dot - 6 > 9) return {-1, ""};
    long index = 0;
    for (std::size_t i = 6; i < dot; ++i) {
      if (key[i] < '0' || key[i] > '9') return {-1, ""};
      index = index * 10 + (key[i] - '0');
    }
    return {index, key.substr(dot + 1)};
  }

 private:
  std::function<std::shared_ptr<void>()> begin_update_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

// d = g + wd p; with momentum: b = d on the first step, then b = mu b + (1 - dampening) d; nesterov: d = d + mu b,
// else d = b; p -= lr d.
class SGD : public Optimizer {
 public:
  template <class Model>
  SGD(Model& model, SGDOptions options) : Optimizer(model, options.lr), o_(options) {
    if (o_.nesterov && (o_.momentum <= 0 || o_.dampening != 0))
      throw Error("SGD: nesterov momentum requires a momentum and zero dampening");
    momentum_.resize(params_.size());
  }

 protected:
  std::string kind() const override { return "SGD"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override {
    return {{"lr", lr}, {"momentum", o_.momentum}, {"dampening", o_.dampening}, {"weight_decay", o_.weight_decay},
            {"nesterov", o_.nesterov ? 1.0 : 0.0}};
  }
  void set_hyperparameters(const std::vector<std::pair<std::string, double>>& v) override {
    lr = v[0].second, o_.momentum = v[1].second, o_.dampening = v[2].second, o_.weight_decay = v[3].second;
    o_.nesterov = v[4].second != 0;
  }
  bool state_names_allow(const std::string& name) const override { return name == "momentum_buffer"; }
  void write_state(TensorMap& out) const override {
    for (std::size_t k = 0; k < momentum_.size(); ++k)
      if (momentum_[k].defined()) out.emplace(state_name(k, "momentum_buffer"), momentum_[k].clone());
  }
  void check_state(const TensorMap&, const std::function<void(const std::string&)>&) const override {}
  void read_state(const TensorMap& in) override {
    for (std::size_t k = 0; k < momentum_.size(); ++k) {
      const auto it = in.find(state_name(k, "momentum_buffer"));
      momentum_[k] = it == in.end() ? Tensor{} : it->second.clone();  // absent: before the first step
    }
  }

 public:
  void step() {
    const auto update = begin_update();
    using et::vfloat;
    const float wd = static_cast<float>(o_.weight_decay), mu = static_cast<float>(o_.momentum),
                damp = static_cast<float>(1 - o_.dampening), rate = static_cast<float>(lr);
    std::vector<char> first(params_.size());  // no momentum buffer yet: it starts as the first gradient
    for (std::size_t k = 0; k < params_.size(); ++k) {
      first[k] = !momentum_[k].defined();
      if (mu != 0 && first[k]) momentum_[k] = Tensor(params_[k].value.shape());
    }
    for_element_chunks([&](std::size_t k, index_t begin, index_t end) {
      float* __restrict p = params_[k].value.data();
      const float* __restrict g = params_[k].grad.data();
      float* __restrict b = mu != 0 ? momentum_[k].data() : nullptr;
      // One element per lane, whole vectors loaded and stored as vectors (element by element, with these
      // branches inside, the step took 7x as long); the tail goes through a zero-padded vector.
      auto update = [&](vfloat pv, vfloat gv, vfloat& bv) {
        vfloat d = gv + wd * pv;
        if (b) {
          bv = first[k] ? d : mu * bv + damp * d;
          d = o_.nesterov ? d + mu * bv : bv;
        }
        return pv - rate * d;
      };
      index_t i = begin;
      for (; i + et::simd_width <= end; i += et::simd_width) {
        vfloat bv = b ? et::load(b + i) : vfloat{};
        et::store(p + i, update(et::load(p + i), et::load(g + i), bv));
        if (b) et::store(b + i, bv);
      }
      if (i < end) {
        vfloat pv{}, gv{}, bv{};
        const int lanes = static_cast<int>(end - i);
        for (int l = 0; l < lanes; ++l) pv[l] = p[i + l], gv[l] = g[i + l], bv[l] = b ? b[i + l] : 0.0f;
        pv = update(pv, gv, bv);
        for (int l = 0; l < lanes; ++l) {
          p[i + l] = pv[l];
          if (b) b[i + l] = bv[l];
        }
      }
    });
  }

 private:
  SGDOptions o_;
  std::vector<Tensor> momentum_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};

// Adam (decoupled = false): g += wd p. AdamW (decoupled = true): p *= 1 - lr wd first.
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
class Adam : public Optimizer {
 public:
  template <class Model>
  Adam(Model& model, AdamOptions options) : Adam(model, options, false) {}
  void step() {
    const auto update = begin_update();
    ++t_;
    const double bias1 = 1 - std::pow(o_.beta1, static_cast<double>(t_));
    const double bias2_sqrt = std::sqrt(1 - std::pow(o_.beta2, static_cast<double>(t_)));
    // lr / bias1 m / (sqrt(v) / bias2_sqrt + eps) as (lr bias2_sqrt / bias1) m / (sqrt(v) + eps bias2_sqrt): one
    // division a vector instead of two (with a square root, they were most of the step's arithmetic).
    const float b1 = static_cast<float>(o_.beta1), b2 = static_cast<float>(o_.beta2),
                eps_c2 = static_cast<float>(o_.eps * bias2_sqrt),
                step_size = static_cast<float>(lr * bias2_sqrt / bias1), wd = static_cast<float>(o_.weight_decay),
                decay = static_cast<float>(1 - lr * o_.weight_decay);
    using et::vfloat;
    const float l2 = decoupled_ ? 0.0f : wd, keep = decoupled_ ? decay : 1.0f;
    for_element_chunks([&](std::size_t k, index_t begin, index_t end) {
      float* __restrict p = params_[k].value.data();
      const float* __restrict g = params_[k].grad.data();
      float* __restrict m = m_[k].data();
      float* __restrict v = v_[k].data();
      // One element per lane. Whole vectors are loaded and stored as vectors (a lane-by-lane copy made the
      // step 2.8x slower); the tail goes through a zero-padded vector.
      auto update = [&](vfloat pv, vfloat gv, vfloat& mv, vfloat& vv) {
        gv += l2 * pv;
        pv *= keep;
        mv = b1 * mv + (1 - b1) * gv;
        vv = b2 * vv + (1 - b2) * gv * gv;
        return pv - step_size * mv / (et::vsqrt(vv) + eps_c2);
      };
      index_t i = begin;
      for (; i + et::simd_width <= end; i += et::simd_width) {
        vfloat mv = et::load(m + i), vv = et::load(v + i);
        et::store(p + i, update(et::load(p + i), et::load(g + i), mv, vv));
        et::store(m + i, mv);
        et::store(v + i, vv);
      }
      if (i < end) {
        vfloat pv{}, gv{}, mv{}, vv{};
        const int lanes = static_cast<int>(end - i);
        for (int l = 0; l < lanes; ++l) pv[l] = p[i + l], gv[l] = g[i + l], mv[l] = m[i + l], vv[l] = v[i + l];
        pv = update(pv, gv, mv, vv);
        for (int l = 0; l < lanes; ++l) p[i + l] = pv[l], m[i + l] = mv[l], v[i + l] = vv[l];
      }
    });
  }

 protected:
  template <class Model>
  Adam(Model& model, AdamOptions options, bool decoupled) : Optimizer(model, options.lr), o_(options), decoupled_(decoupled) {
    for (const Parameter& p : params_) {
      m_.emplace_back(p.value.shape());
      v_.emplace_back(p.value.shape());
    }
  }

  std::string kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override {
    return {{"lr", lr}, {"betas.0", o_.beta1}, {"betas.1", o_.beta2}, {"eps", o_.eps}, {"weight_decay", o_.weight_decay}};
  }
  void set_hyperparameters(const std::vector<std::pair<std::string, double>>& v) override {
    lr = v[0].second, o_.beta1 = v[1].second, o_.beta2 = v[2].second, o_.eps = v[3].second;
    o_.weight_decay = v[4].second;
  }
  bool state_names_allow(const std::string& name) const override {
    return name == "step" || name == "exp_avg" || name == "exp_avg_sq";
  }
  // torch keeps a step per parameter (a float32 scalar in torch 1.13 and 2.x); here they are one count.
  void write_state(TensorMap& out) const override {
    if (t_ == 0) return;  // torch's state is empty before the first step
    for (std::size_t k = 0; k < params_.size(); ++k) {
      Tensor step(Shape{});
      step[0] = static_cast<float>(t_);
      out.emplace(state_name(k, "step"), step);
      out.emplace(state_name(k, "exp_avg"), m_[k].clone());
      out.emplace(state_name(k, "exp_avg_sq"), v_[k].clone());
    }
  }
  void check_state(const TensorMap& in, const std::function<void(const std::string&)>& fail) const override {
    if (in.empty()) return;
    const auto first = in.find(state_name(0, "step"));
    for (std::size_t k = 0; k < params_.size(); ++k)
      for (const char* name : {"step", "exp_avg", "exp_avg_sq"})
        if (!in.contains(state_name(k, name))) fail(fmt::format("missing key \"{}\"", state_name(k, name)));
    for (std::size_t k = 0; k < params_.size(); ++k) {
      const float step = in.at(state_name(k, "step"))[0];
      if (step != first->second[0] || !(step >= 1) || step != std::floor(step) || step > 16777216.0f)
        fail(fmt::format("\"{}\" is {}: the steps must be one whole count, from 1 to 2^24", state_name(k, "step"), step));
    }
  }
  void read_state(const TensorMap& in) override {
    t_ = in.empty() ? 0 : static_cast<long>(in.at(state_name(0, "step"))[0]);
    for (std::size_t k = 0; k < params_.size(); ++k) {
      if (in.empty()) {
        m_[k].fill(0.0f), v_[k].fill(0.0f);
      } else {
        m_[k].copy_from(in.at(state_name(k, "exp_avg")));
        v_[k].copy_from(in.at(state_name(k, "exp_avg_sq")));
      }
    }
  }

 private:
  AdamOptions o_;
  bool decoupled_;
  long t_ = 0;
  std::vector<Tensor> m_, v_;
};

// AdamW: Adam with decoupled weight decay (default 1e-2, as torch.optim.AdamW).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};
class AdamW : public Adam {
 public:
  template <class Model>
  AdamW(Model& model, AdamWOptions o) : Adam(model, AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true) {}
};

// torch.nn.utils.clip_grad_norm_: scales every gradient by min(1, max_norm / (total + 1e-6)), where total is
// the L2 norm of all gradients together; returns total (before clipping). A NaN total makes every gradient NaN,
// as torch.clamp passes the NaN on (std::min would give 1).
inline double clip_grad_norm(Optimizer& opt, double max_norm) {
  double total = 0;
  for (auto& p : opt.params()) {
    double sq = 0;
    for (const float g : p.grad.values()) sq += static_cast<double>(g) * g;
    total += sq;
  }
  total = std::sqrt(total);
  const double ratio = max_norm / (total + 1e-6);
  const float coef = static_cast<float>(ratio < 1.0 || std::isnan(ratio) ? ratio : 1.0);
  for (auto& p : opt.params())
    for (float& g : p.grad.values()) g *= coef;
  return total;
}


// torch.optim.lr_scheduler.StepLR: lr = base gamma^floor(epoch / step_size); call step() after opt.step().
class StepLR {
 public:
  StepLR(Optimizer& opt, int step_size, double gamma = 0.1) : opt_(opt), base_(opt.lr), step_size_(step_size), gamma_(gamma) {
    if (step_size < 1) throw Error(fmt::format("StepLR: step_size must be >= 1, got {}", step_size));
  }
  void step() { opt_.lr = base_ * std::pow(gamma_, ++epoch_ / step_size_); }
  // torch's keys: last_epoch, base_lrs (the optimizer's lr is the optimizer's state).
  Metadata state_dict() const { return {{"last_epoch", std::to_string(epoch_)}, {"base_lrs.0", fmt::format("{}", base_)}}; }
  void load_state_dict(const Metadata& state) { detail::load_schedule(state, "StepLR", epoch_, base_); }

 private:
  Optimizer& opt_;
  double base_;
  int step_size_;
  double gamma_;
  int epoch_ = 0;
};

// torch.optim.lr_scheduler.CosineAnnealingLR: lr = eta_min + (base - eta_min)(1 + cos(pi epoch / T_max)) / 2.
class CosineAnnealingLR {
 public:
  CosineAnnealingLR(Optimizer& opt, int t_max, double eta_min = 0) : opt_(opt), base_(opt.lr), t_max_(t_max), eta_min_(eta_min) {
    if (t_max < 1) throw Error(fmt::format("CosineAnnealingLR: T_max must be >= 1, got {}", t_max));
  }
  void step() {
    ++epoch_;
    opt_.lr = eta_min_ + (base_ - eta_min_) * (1 + std::cos(std::numbers::pi * epoch_ / t_max_)) / 2;
  }
  Metadata state_dict() const { return {{"last_epoch", std::to_string(epoch_)}, {"base_lrs.0", fmt::format("{}", base_)}}; }
  void load_state_dict(const Metadata& state) { detail::load_schedule(state, "CosineAnnealingLR", epoch_, base_); }

 private:
  Optimizer& opt_;
  double base_;
  int t_max_;
  double eta_min_;
  int epoch_ = 0;
};

}  // namespace kiln::optim
